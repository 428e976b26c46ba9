"""The NVAE model (Vahdat & Kautz 2020): NVAENet + the NVAE objective + temperature sampling, behind the
workbook's model interface `loss(x, step) -> (loss, stats)` and `sample(n)`, with its presets; BatchNorm
re-estimation for sampling at a temperature (NVAE Sec. 5).

Symbols: `x` images in [0, 1] (B, 3, 32, 32); `z_l`, `q`, `p` as in lib.nets.nvae; `kl` (B, G) the per-group
KL(q(z_l | x, z_<l) || p(z_l | z_<l)) in nats; `coeff` the KL warm-up weight; `lam` the spectral-regulariser
weight lambda; `t` the sampling temperature (the prior's standard deviations are scaled by t); `k` importance
samples; `log_w` (k, B) = log p(x | z) + sum_l [log p(z_l | z_<l) - log q(z_l | x, z_<l)].
The network may run under bf16 autocast; the likelihood and KL terms are computed in fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..common.checks import check_field_types
from ..data import N_DIMS
from ..dists import discretized_gaussian_log_prob, discretized_mean, dmol_log_prob, dmol_mean, dmol_sample
from ..losses import (
    bits_per_dim,
    bn_scale_penalty,
    kl_balance,
    kl_coeff_at,
    power_iteration,
    spectral_coeff_at,
)
from ..nets.nvae import NVAENet
from ..train.config import TrainConfig

LIKELIHOODS = ("dmol", "gaussian")


@dataclass(frozen=True)
class NVAEConfig:
    channels: int = 64  # C, channels at the 16x16 latent scale (doubled at each coarser scale)
    n_scales: int = 2  # latent scales: 16x16, 8x8, ...
    groups_per_scale: int = 3  # latent groups z_l per scale
    latent_channels: int = 20  # channels of each z_l
    enc_cells: int = 2  # encoder cells per group
    dec_cells: int = 2  # decoder cells between consecutive groups
    n_pre: int = 2  # preprocessing encoder cells at 32x32 (the last one halves to 16x16)
    n_post: int = 2  # postprocessing decoder cells back at 32x32 (the first one doubles)
    expand: int = 6  # E, the decoder cell's 1x1 expansion ratio
    res_scale: float = 0.1  # scale of every residual branch (stability)
    likelihood: str = "dmol"  # p(x | z): dmol (mixture of logistics) | gaussian (fixed-sigma, i.e. MSE)
    n_mix: int = 10  # M, DMOL mixture components
    coupling: bool = True  # PixelCNN++'s linear dependence of green/blue on red/green
    gaussian_sigma: float = 0.1  # sigma of the gaussian likelihood in [0, 1] units, discretized to 8 bits
    kl_warmup_steps: int = 10_000  # KL warm-up length in steps (0 = none)
    kl_warmup_start: int = 0  # step at which the warm-up window opens (a continued stage gets a fresh one)
    kl_min_coeff: float = 1e-4  # floor of the KL coefficient during warm-up
    kl_balance: bool = True  # NVAE's KL balancing while the coefficient is below 1
    spectral_coeff: float = 1e-2  # lambda, weight of the spectral and BN-scale regularisers after warm-up
    spectral_coeff_init: float = 10.0  # lambda at the start of warm-up (log-linear to spectral_coeff)
    n_power_iter: int = 1  # power-iteration steps per training step (10 on the first)
    temperature: float = 1.0  # t used by sample() when none is given

    def __post_init__(self):
        check_field_types(self)  # ints, floats (finite), bools and strings of the annotated type
        for name in (
            "channels",
            "n_scales",
            "groups_per_scale",
            "latent_channels",
            "enc_cells",
            "dec_cells",
            "n_pre",
            "n_post",
            "expand",
            "n_mix",
            "n_power_iter",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"NVAEConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_scales > 4:
            raise ValueError(f"NVAEConfig.n_scales must be <= 4 (16x16 down to 2x2), got {self.n_scales}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"NVAEConfig.likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        for name in ("res_scale", "gaussian_sigma", "spectral_coeff", "spectral_coeff_init", "temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"NVAEConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.kl_warmup_steps < 0 or self.kl_warmup_start < 0 or not 0 < self.kl_min_coeff <= 1:
            raise ValueError(
                "NVAEConfig: kl_warmup_steps and kl_warmup_start must be >= 0, kl_min_coeff in (0, 1]"
            )


class NVAE(nn.Module):
    """Hierarchical VAE with a DMOL (or fixed-sigma Gaussian) decoder, trained with the NVAE objective."""

    def __init__(self, cfg: NVAEConfig = NVAEConfig()):
        super().__init__()
        self.cfg = cfg
        out_channels = 10 * cfg.n_mix if cfg.likelihood == "dmol" else 3
        self.net = NVAENet(
            cfg.channels,
            cfg.n_scales,
            cfg.groups_per_scale,
            cfg.latent_channels,
            cfg.enc_cells,
            cfg.dec_cells,
            cfg.n_pre,
            cfg.n_post,
            cfg.expand,
            cfg.res_scale,
            out_channels,
        )
        self._init_output()
        self.register_buffer("alpha", _group_alpha(cfg.n_scales, cfg.groups_per_scale))
        self._spectral = _shape_groups(self.net)  # [(param names, (out, in))], fixed by the architecture
        named = dict(self.net.named_parameters())
        self._spectral_weights = [[named[n] for n in names] for names, _ in self._spectral]  # looked up once
        for k, (names, (n_out, _)) in enumerate(self._spectral):
            self.register_buffer(f"sn_u{k}", nn.functional.normalize(torch.randn(len(names), n_out), dim=1))
        self.register_buffer("sn_ready", torch.tensor(False))  # u vectors converged (checkpointed for resume)
        self._sn_warm = False  # sn_ready as a Python bool once True: no host-device sync per step after
        self._bn_scales = [m.weight for m in self.net.modules() if isinstance(m, nn.BatchNorm2d)]

    def _init_output(self) -> None:
        """Start the decoder near a broad distribution over [0, 1] (untrained bits/dim near 8)."""
        conv = self.net.out.conv
        nn.init.normal_(conv.weight, std=1e-3)
        nn.init.zeros_(conv.bias)
        with torch.no_grad():
            m = self.cfg.n_mix
            if self.cfg.likelihood == "dmol":
                conv.bias[m : 4 * m] = 0.5  # locations at mid-grey
                conv.bias[4 * m : 7 * m] = math.log(0.2)  # logistic scale 0.2 in [0, 1] units
            else:
                conv.bias.fill_(0.5)

    # --- likelihood, KL and regularisers (fp32) ---------------------------------------------------------------
    def log_px_z(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """log p(x | z) in nats per image (B,) from the decoder output, in fp32."""
        out = out.float()
        if self.cfg.likelihood == "dmol":
            return dmol_log_prob(x.float(), out, self.cfg.n_mix, self.cfg.coupling).sum((1, 2))
        log_scale = torch.full_like(out, math.log(self.cfg.gaussian_sigma))
        return discretized_gaussian_log_prob(x.float(), out, log_scale).sum((1, 2, 3))

    @staticmethod
    def group_kl(groups) -> torch.Tensor:
        """Analytic per-group KL (B, G) in fp32."""
        return torch.stack([q.float().kl(p.float()).sum((1, 2, 3)) for q, p, _ in groups], dim=1)

    def spectral_sum(self) -> torch.Tensor:
        """sum of the largest singular values of every conv / linear weight (reshaped to (out, in))."""
        self._sn_warm = self._sn_warm or bool(self.sn_ready)  # read the buffer only until it turns True
        n_iter = self.cfg.n_power_iter if self._sn_warm else 10
        total = torch.zeros((), device=self.alpha.device)
        for k, (weights, (_, (n_out, n_in))) in enumerate(zip(self._spectral_weights, self._spectral)):
            weight = torch.stack([w.reshape(n_out, n_in) for w in weights])
            sigma, u = power_iteration(weight, getattr(self, f"sn_u{k}"), n_iter)
            if self.training:
                getattr(self, f"sn_u{k}").copy_(u)
            total = total + sigma.sum()
        if self.training and not self._sn_warm:
            self.sn_ready.fill_(True)
            self._sn_warm = True  # the buffer now says so too: no need to read it back
        return total

    def loss(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        out, groups = self.net(x)
        with torch.autocast(x.device.type, enabled=False):
            log_px, kl = self.log_px_z(x, out), self.group_kl(groups)
            c = self.cfg
            coeff = kl_coeff_at(step, c.kl_warmup_steps, c.kl_warmup_start, c.kl_min_coeff)
            kl_term, _ = kl_balance(kl, self.alpha, coeff, c.kl_balance)
            lam = spectral_coeff_at(coeff, c.spectral_coeff, c.spectral_coeff_init)
            spectral, bn = self.spectral_sum(), bn_scale_penalty(self._bn_scales).float()
            loss = ((kl_term - log_px).mean() + lam * (spectral + bn)) / N_DIMS  # nats/dim: lr scale-free
        elbo = (log_px - kl.sum(1)).detach().mean()
        stats = {
            "elbo": elbo,
            "bpd_elbo": bits_per_dim(-elbo),
            "reconstruction": -log_px.detach().mean(),
            "kl": kl.detach().sum(1).mean(),
            "kl_coeff": torch.tensor(coeff),
            "spectral": spectral.detach(),
            "bn_scale": bn.detach(),
        }
        stats.update({f"kl_group{i}": v for i, v in enumerate(kl.detach().mean(0))})
        return loss, stats

    # --- evaluation ---------------------------------------------------------------------------------------------
    def elbo_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(x | z) (B,), per-group analytic KL (B, G)) with one posterior draw per image."""
        out, groups = self.net(x)
        return self.log_px_z(x, out), self.group_kl(groups)

    def log_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """log_w (k, B) with the encoder run once and the top-down pass on k copies of the batch."""
        feats = [f.repeat(k, 1, 1, 1) for f in self.net.encode(x)]
        out, groups = self.net.top_down(feats)
        log_ratio = sum(
            (p.float().log_prob(z.float()) - q.float().log_prob(z.float())).sum((1, 2, 3))
            for q, p, z in groups
        )
        return (self.log_px_z(x.repeat(k, 1, 1, 1), out) + log_ratio).view(k, x.shape[0])

    def decode(self, out: torch.Tensor, mode: str = "sample") -> torch.Tensor:
        """Images from the decoder output: a DMOL draw ("sample") or its mean ("mean"); the Gaussian shows its mean."""
        if self.cfg.likelihood == "gaussian":
            return discretized_mean(out.float())
        pick = dmol_sample if mode == "sample" else dmol_mean
        return pick(out.float(), self.cfg.n_mix, self.cfg.coupling)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        """x -> z ~ q -> the decoder's image (mean by default), (B, 3, 32, 32) in [0, 1]."""
        return self.decode(self.net(x)[0], mode)

    @torch.no_grad()
    def sample(self, n: int, t: float | None = None, mode: str = "sample") -> torch.Tensor:
        """n images (n, 3, 32, 32) in [0, 1] from the prior at temperature t (default cfg.temperature)."""
        out, _ = self.net.top_down(n=n, t=self.cfg.temperature if t is None else t)
        return self.decode(out, mode)


@torch.no_grad()
def reestimate_bn(model: NVAE, t: float = 1.0, n_batches: int = 20, batch_size: int = 500) -> NVAE:
    """NVAE Sec. 5: re-estimate the decoder's BatchNorm statistics from prior samples at temperature t, in train
    mode (cumulative averages over n_batches), then return the model in eval mode. Encoder statistics are kept."""
    decoder = [model.net.dec_towers, model.net.dec_up, model.net.post]
    bns = [m for part in decoder for m in part.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the re-estimation batches
    model.train()
    for _ in range(n_batches):
        model.net.top_down(n=batch_size, t=t)
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    return model.eval()


def _group_alpha(n_scales: int, groups_per_scale: int) -> torch.Tensor:
    """KL-balancing sizes, top-down: a group's latent positions over the groups at its scale, min-normalised."""
    sides = [16 // 2**s for s in reversed(range(n_scales)) for _ in range(groups_per_scale)]
    alpha = torch.tensor([side**2 / groups_per_scale for side in sides], dtype=torch.float32)
    return alpha / alpha.min()


def _shape_groups(net: nn.Module) -> list[tuple[list[str], tuple[int, int]]]:
    """Conv and linear weights grouped by their (out, in) matrix shape, for batched power iteration."""
    groups: dict[tuple[int, int], list[str]] = {}
    for name, module in net.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            w = module.weight
            groups.setdefault((w.shape[0], w[0].numel()), []).append(f"{name}.weight")
    return [(names, shape) for shape, names in groups.items()]


NVAE_REFERENCE = NVAEConfig()  # the reference project's small config: 2 scales, 64 channels, 3 groups/scale
# sized like the official code's small configuration (2 scales, 64 channels, 3 groups per scale, 16.7M parameters,
# 12.6 GFLOP/image/step): our cells are smaller, so 8 encoder and decoder cells per group give 16.6M and 11.7 GFLOP
NVAE_OFFICIAL_SMALL = replace(NVAE_REFERENCE, enc_cells=8, dec_cells=8)
NVAE_TINY = NVAEConfig(
    channels=16,
    n_scales=2,
    groups_per_scale=2,
    latent_channels=4,
    enc_cells=1,
    dec_cells=1,
    n_pre=1,
    n_post=1,
    expand=2,
    n_mix=3,
    kl_warmup_steps=20,
)
# Adamax, lr 1e-2 with warm-up then cosine to 1e-4, as the official code; its L2 weight decay of 3e-4 acts on a
# nats-per-image loss, ours is per dimension, hence 3e-4 / 3072. 140k steps of 64 = 200 epochs of the 45k split.
NVAE_TRAIN = TrainConfig(
    steps=140_000,
    batch_size=64,
    lr=1e-2,
    optimizer="adamax",
    weight_decay=1e-7,
    warmup_steps=3_500,
    schedule="cosine",
    min_lr_ratio=0.01,
    ema_decay=0.9999,
    n_samples=64,
    ckpt_every=2_000,
)
PRESETS = {  # name -> (model config, TrainConfig)
    "reference": (
        replace(NVAE_REFERENCE, kl_warmup_steps=42_000),
        NVAE_TRAIN,
    ),
    "official_small": (
        replace(NVAE_OFFICIAL_SMALL, kl_warmup_steps=42_000),
        NVAE_TRAIN,
    ),
    "tiny": (
        NVAE_TINY,
        TrainConfig(
            steps=30,
            batch_size=16,
            lr=5e-3,
            optimizer="adamax",
            warmup_steps=5,
            schedule="cosine",
            min_lr_ratio=0.01,
            log_every=5,
            ckpt_every=10,
            n_samples=16,
        ),
    ),
}
