"""Models: each is a net + its loss + its sampler behind `loss(x, step) -> (loss, stats)` and `sample(n)`,
with a frozen `*Config` dataclass beside it and named presets. `MODELS` maps the CLI's model names to them.

So far one baseline lives here: `IndependentPixels`, every subpixel its own 256-way categorical,
p(x) = prod_d Cat(x_d; softmax(logits_d)). It ignores all dependence between pixels, so its bits/dim is the
floor any real model must beat; its maximum-likelihood fit is the per-position histogram of the data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .dists import DISCRETE_LIKELIHOODS, DiagonalGaussian, standard_normal_log_prob
from .losses import (beta_elbo, capacity_at, capacity_elbo, dreg_loss, dsm_loss, iwae_bound, iwae_loss,
                     per_level_means)
from .metrics import N_DIMS, bits_per_dim, largest_pairwise_distance
from .nets.ncsn import RefineNet, ScoreUNet
from .nets.vae import ConvDecoder, ConvEncoder
from .samplers import (annealed_langevin, annealed_langevin_inpaint, annealed_langevin_interpolate, geometric_sigmas,
                       technique2_n_sigmas, technique4_step_lr)
from .train import TrainConfig

N_LEVELS = 256  # 8-bit pixel values


@dataclass(frozen=True)
class IndependentPixelsConfig:
    init_scale: float = 0.0  # std of the initial logits; 0 starts at the uniform model, exactly 8 bits/dim

    def __post_init__(self):
        if self.init_scale < 0:
            raise ValueError(f"IndependentPixelsConfig.init_scale must be >= 0, got {self.init_scale}")


class IndependentPixels(nn.Module):
    """A categorical per subpixel; x in [0, 1] is read as the 8-bit level round(255 x)."""

    def __init__(self, cfg: IndependentPixelsConfig = IndependentPixelsConfig()):
        super().__init__()
        self.cfg = cfg
        self.logits = nn.Parameter(torch.randn(N_DIMS, N_LEVELS) * cfg.init_scale)  # (D, 256)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats per image; x: (B, 3, 32, 32) in [0, 1] -> (B,)."""
        levels = (x.reshape(x.shape[0], N_DIMS) * (N_LEVELS - 1)).round().long()  # (B, D)
        log_p = F.log_softmax(self.logits.float(), dim=-1)                          # (D, 256)
        return log_p[torch.arange(N_DIMS, device=x.device), levels].sum(dim=1)       # (B, D) -> (B,)

    def loss(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        nll = -self.log_prob(x)
        bpd = bits_per_dim(nll).mean()
        return nll.mean() / N_DIMS, {"bpd": bpd.detach()}  # nats per dim keeps the lr scale-free

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        levels = torch.distributions.Categorical(logits=self.logits.float()).sample((n,))  # (n, D)
        return levels.float().div(N_LEVELS - 1).reshape(n, 3, 32, 32)


@dataclass(frozen=True)
class ModelSpec:
    """What the CLI needs to build a model family: its config class, builder and presets."""
    config: type
    build: type
    presets: dict = field(default_factory=dict)  # name -> (model config, TrainConfig)


MODELS: dict[str, ModelSpec] = {
    "pixels": ModelSpec(IndependentPixelsConfig, IndependentPixels, presets={
        "default": (IndependentPixelsConfig(), TrainConfig(steps=2000, batch_size=256, lr=1e-2, ema_decay=0.99)),
        "tiny": (IndependentPixelsConfig(), TrainConfig(steps=20, batch_size=16, lr=1e-2, log_every=5,
                                                        ckpt_every=10, n_samples=16)),
    }),
}


# --- NCSN: noise-conditional score network (Song & Ermon 2019; NCSNv2 techniques, Song & Ermon 2020) --------
# sigmas: descending geometric ladder sigma_1 > ... > sigma_L (buffer); level: index into it; score: s_theta(x, level)
# ~ grad_x log p_sigma(x) in the coordinates of x in [0, 1]; the nets see 2x - 1.

NCSN_NETS = ("unet", "refinenet")
N_LOGGED_LEVELS = 10  # per-level DSM losses logged for at most this many (evenly spaced) levels


@dataclass(frozen=True)
class NCSNConfig:
    net: str = "unet"                         # score net: unet (ScoreUNet) | refinenet (NCSN's RefineNet)
    nf: int = 128                             # base channel width of the score net
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)   # unet only: width multiplier per resolution (32, 16, 8, 4)
    n_res_blocks: int = 2                     # unet only: residual blocks per resolution
    dropout: float = 0.1                      # unet only: dropout inside residual blocks
    scale_by_sigma: bool = True               # NCSNv2 technique 3: score = net(x, sigma) / sigma
    n_sigmas: int = 10                        # L, number of noise levels
    sigma_max: float = 1.0                    # sigma_1, for data in [0, 1]
    sigma_min: float = 0.01                   # sigma_L
    anneal_power: float = 2.0                 # lambda(sigma) = sigma^anneal_power weights the levels (eq. 6)
    n_steps_each: int = 100                   # T, Langevin steps per level in sample()
    step_lr: float = 2e-5                     # epsilon of Alg. 1: alpha_i = step_lr * sigma_i^2 / sigma_L^2
    denoise: bool = True                      # sample() ends with the Tweedie step x + sigma_L^2 s(x, L)

    def __post_init__(self):
        for name in ("nf", "n_res_blocks", "n_sigmas", "n_steps_each"):
            if getattr(self, name) < 1:
                raise ValueError(f"NCSNConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.net not in NCSN_NETS:
            raise ValueError(f"NCSNConfig.net must be one of {list(NCSN_NETS)}, got {self.net!r}")
        if self.step_lr <= 0:
            raise ValueError(f"NCSNConfig.step_lr must be > 0, got {self.step_lr}")
        if self.sigma_min <= 0:
            raise ValueError(f"NCSNConfig.sigma_min must be > 0, got {self.sigma_min}")
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"NCSNConfig.sigma_min must be < sigma_max, got {self.sigma_min} >= {self.sigma_max}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"NCSNConfig.dropout must be in [0, 1), got {self.dropout}")


class NCSN(nn.Module):
    """A score net trained by annealed DSM at the config's sigma ladder, sampled by annealed Langevin dynamics."""

    def __init__(self, cfg: NCSNConfig = NCSNConfig()):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("sigmas", geometric_sigmas(cfg.sigma_max, cfg.sigma_min, cfg.n_sigmas))
        if cfg.net == "unet":
            self.net = ScoreUNet(cfg.nf, cfg.ch_mult, cfg.n_res_blocks, dropout=cfg.dropout)
        else:
            self.net = RefineNet(cfg.nf, n_classes=cfg.n_sigmas)
        step = max(1, math.ceil(cfg.n_sigmas / N_LOGGED_LEVELS))
        self.logged = {level: f"dsm_sigma={float(self.sigmas[level]):.3g}"
                       for level in sorted({*range(0, cfg.n_sigmas, step), cfg.n_sigmas - 1})}

    def score(self, x: torch.Tensor, level) -> torch.Tensor:
        """s_theta(x, sigma_level) for x (B, 3, H, W) near [0, 1]; level an int or (B,) long."""
        level = torch.as_tensor(level, device=x.device).long().expand(x.shape[0])
        sigma = self.sigmas[level]
        out = self.net(2 * x - 1, sigma if self.net.conditioning == "sigma" else level).float()
        return out / sigma.view(-1, 1, 1, 1) if self.cfg.scale_by_sigma else out

    def loss(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        losses, level = dsm_loss(self.score, x, self.sigmas, self.cfg.anneal_power)
        per_level = per_level_means(losses, level, self.cfg.n_sigmas)  # unbiased, averaged over the log window
        return losses.mean(), {name: per_level[lvl] for lvl, name in self.logged.items()}

    def _chain(self, options: dict) -> dict:
        """Sampler options with the config's defaults filled in."""
        defaults = dict(n_steps_each=self.cfg.n_steps_each, step_lr=self.cfg.step_lr, denoise=self.cfg.denoise)
        return {**defaults, **{k: v for k, v in options.items() if v is not None}}

    @torch.no_grad()
    def sample(self, n: int, x: torch.Tensor | None = None, return_trajectory: bool = False,
               keep_every: int | None = None, **options):
        """n images (n, 3, 32, 32) in [0, 1] by Alg. 1 from uniform noise (or from x); options: n_steps_each,
        step_lr, denoise. With return_trajectory, also the list of (unclamped) snapshots."""
        x = torch.rand(n, 3, 32, 32, device=self.sigmas.device) if x is None else x
        out = annealed_langevin(self.score, x, self.sigmas, return_trajectory=return_trajectory,
                                keep_every=keep_every, **self._chain(options))
        return (out[0].clamp(0, 1), out[1]) if return_trajectory else out.clamp(0, 1)

    @torch.no_grad()
    def inpaint(self, x_known: torch.Tensor, mask: torch.Tensor, **options) -> torch.Tensor:
        """Fill mask == 0 pixels of x_known (B, 3, 32, 32) in [0, 1]; known pixels are returned exactly."""
        out = annealed_langevin_inpaint(self.score, x_known, mask, self.sigmas, **self._chain(options))
        return torch.where(mask.bool().expand_as(x_known), x_known, out.clamp(0, 1))

    @torch.no_grad()
    def interpolate(self, n_rows: int = 4, n_interpolations: int = 8, **options) -> torch.Tensor:
        """(n_rows * n_interpolations, 3, 32, 32) in [0, 1]: rows of chains whose noise slerps between two draws."""
        out = annealed_langevin_interpolate(self.score, (3, 32, 32), self.sigmas, n_rows, n_interpolations,
                                            device=self.sigmas.device, **self._chain(options))
        return out.clamp(0, 1)


def ncsnv2_config(x, base: NCSNConfig | None = None, n_steps_each: int = 5, sigma_min: float = 0.01,
                  limit: int = 5000) -> NCSNConfig:
    """NCSNv2 techniques 1, 2, 4 on images x (N, 3, 32, 32): sigma_1 = largest pairwise distance (first
    `limit` images), L from technique 2, step_lr from technique 4 for T = n_steps_each."""
    sigma_max = largest_pairwise_distance(x[:limit])
    return _ncsnv2(sigma_max, sigma_min, n_steps_each, base or NCSNConfig(net="refinenet", scale_by_sigma=True))


def _ncsnv2(sigma_max: float, sigma_min: float, n_steps_each: int, base: NCSNConfig) -> NCSNConfig:
    n_sigmas = technique2_n_sigmas(sigma_max, sigma_min, N_DIMS)
    gamma = (sigma_max / sigma_min) ** (1 / (n_sigmas - 1))  # the ladder's ratio sigma_{i-1} / sigma_i
    step_lr = technique4_step_lr(n_steps_each, gamma, sigma_min)
    return replace(base, sigma_max=sigma_max, sigma_min=sigma_min, n_sigmas=n_sigmas, n_steps_each=n_steps_each,
                   step_lr=step_lr, denoise=True)


NCSN_PAPER = NCSNConfig(net="refinenet", nf=128, scale_by_sigma=False, n_sigmas=10, sigma_max=1.0, sigma_min=0.01,
                        n_steps_each=100, step_lr=2e-5, denoise=False)  # the released code's chain is step_lr=4e-5 here
NCSN_REFERENCE = NCSNConfig(net="unet", nf=128, n_sigmas=50, sigma_max=1.0, sigma_min=0.01, n_steps_each=100,
                            step_lr=2e-5)
# sigma_1 = 50: technique 1 on CIFAR-10 (NCSNv2 paper); ncsnv2_config(x) recomputes it from a data copy
NCSN_V2 = _ncsnv2(50.0, 0.01, 5, NCSNConfig(net="refinenet", scale_by_sigma=True))
NCSN_TINY = NCSNConfig(net="unet", nf=16, ch_mult=(1, 2), n_res_blocks=1, dropout=0.0, n_sigmas=4, sigma_max=1.0,
                       sigma_min=0.05, n_steps_each=5, step_lr=2e-4)

MODELS["ncsn"] = ModelSpec(NCSNConfig, NCSN, presets={
    "paper": (NCSN_PAPER, TrainConfig(steps=200_000, batch_size=128, lr=1e-3, ema_decay=0.0, grad_clip=0.0,
                                      n_samples=64, ckpt_every=5000)),
    "reference": (NCSN_REFERENCE, TrainConfig(steps=100_000, batch_size=128, lr=1e-3, warmup_steps=500,
                                              n_samples=64, ckpt_every=5000)),
    "ncsnv2": (NCSN_V2, TrainConfig(steps=300_000, batch_size=128, lr=1e-4, ema_decay=0.999, n_samples=64,
                                    ckpt_every=5000)),
    "tiny": (NCSN_TINY, TrainConfig(steps=30, batch_size=16, lr=1e-3, log_every=5, ckpt_every=10, n_samples=16)),
})


# --- Beta-VAE and IWAE (Kingma & Welling 2014; Higgins et al. 2017; Burgess et al. 2018; Burda et al. 2016;
# Tucker et al. 2019) --------------------------------------------------------------------------------------------
# z: latent (..., L) with prior p(z) = N(0, I); q: the encoder's DiagonalGaussian q(z|x); the decoder gives each
# subpixel a location in (0, 1) and a learned per-channel scale under a discretized likelihood (lib.dists);
# k: samples per image; log_w = log p(x|z) + log p(z) - log q(z|x), (k, B).

def _check_vae_config(cfg) -> None:
    """Shared validation of the VAE configs; errors name the field."""
    name = type(cfg).__name__
    if cfg.latent_dim < 1:
        raise ValueError(f"{name}.latent_dim must be >= 1, got {cfg.latent_dim}")
    if not cfg.widths or min(cfg.widths) < 1 or len(cfg.widths) > 5:
        raise ValueError(f"{name}.widths must be 1 to 5 positive channel counts, got {cfg.widths}")
    if cfg.likelihood not in DISCRETE_LIKELIHOODS:
        raise ValueError(f"{name}.likelihood must be one of {list(DISCRETE_LIKELIHOODS)}, got {cfg.likelihood!r}")


@dataclass(frozen=True)
class BetaVAEConfig:
    latent_dim: int = 128                          # L, size of z
    widths: tuple[int, ...] = (64, 128, 256, 512)  # encoder channels per stride-2 stage (decoder mirrors them)
    likelihood: str = "logistic"                   # discretized p(x|z): logistic | gaussian (lib.dists)
    beta: float = 1.0                              # beta, the KL weight (Higgins et al. 2017); 1 = the ELBO
    capacity_max: float = 0.0                      # C_max in nats (Burgess et al. 2018); 0 = plain beta-ELBO
    capacity_steps: int = 100_000                  # steps over which C rises linearly from 0 to C_max
    gamma: float = 1000.0                          # gamma, weight of |KL - C| in the capacity objective

    def __post_init__(self):
        _check_vae_config(self)
        for field_name in ("beta", "capacity_max", "gamma"):
            if getattr(self, field_name) < 0:
                raise ValueError(f"BetaVAEConfig.{field_name} must be >= 0, got {getattr(self, field_name)}")
        if self.capacity_steps < 1:
            raise ValueError(f"BetaVAEConfig.capacity_steps must be >= 1, got {self.capacity_steps}")


@dataclass(frozen=True)
class IWAEConfig:
    latent_dim: int = 128                          # L, size of z
    widths: tuple[int, ...] = (64, 128, 256, 512)  # encoder channels per stride-2 stage (decoder mirrors them)
    likelihood: str = "logistic"                   # discretized p(x|z): logistic | gaussian (lib.dists)
    k: int = 5                                     # k, importance samples per image in the training bound
    objective: str = "iwae"                        # iwae: L_k (Burda eq. 8) | vae: the mean of k ELBO samples
    dreg: bool = False                             # encoder gradient by DReG (Tucker et al. 2019); iwae only

    def __post_init__(self):
        _check_vae_config(self)
        if self.k < 1:
            raise ValueError(f"IWAEConfig.k must be >= 1, got {self.k}")
        if self.objective not in ("iwae", "vae"):
            raise ValueError(f"IWAEConfig.objective must be 'iwae' or 'vae', got {self.objective!r}")
        if self.dreg and self.objective != "iwae":
            raise ValueError("IWAEConfig.dreg needs objective='iwae'")


class VAE(nn.Module):
    """Encoder q(z|x), prior N(0, I) and discretized decoder p(x|z): what Beta-VAE and IWAE share."""

    def __init__(self, latent_dim: int, widths, likelihood: str):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder, self.decoder = ConvEncoder(latent_dim, widths), ConvDecoder(latent_dim, widths)
        self.log_scale = nn.Parameter(torch.full((1, 3, 1, 1), -2.0))  # per-channel decoder log-scale
        self.likelihood = DISCRETE_LIKELIHOODS[likelihood]

    def posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """q(z|x) for x (B, 3, 32, 32) in [0, 1]; mu and logvar (B, L)."""
        mu, logvar = self.encoder(x)
        return DiagonalGaussian(mu.float(), logvar.float())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder locations in (0, 1): z (..., L) -> (..., 3, 32, 32)."""
        out = self.decoder(z.reshape(-1, self.latent_dim)).float().sigmoid()
        return out.view(*z.shape[:-1], 3, 32, 32)

    def log_px_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats per image: x (B, 3, 32, 32), z (..., B, L) -> (..., B)."""
        return self.likelihood(x, self.decode(z), self.log_scale).sum((-3, -2, -1))

    def log_weights(self, x: torch.Tensor, k: int, q: DiagonalGaussian | None = None, stop_q: bool = False):
        """(log_w (k, B), z (k, B, L)) with z ~ q(z|x); stop_q cuts q's parameters from log q (DReG)."""
        q = self.posterior(x) if q is None else q
        z = q.rsample(k)
        log_q = (q.detach() if stop_q else q).log_prob(z)
        return self.log_px_z(x, z) + standard_normal_log_prob(z) - log_q, z

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's locations at the posterior mean, (B, 3, 32, 32) in (0, 1)."""
        return self.decode(self.posterior(x).mu)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n prior samples shown as the decoder's locations (the usual VAE display, no pixel noise)."""
        return self.decode(torch.randn(n, self.latent_dim, device=self.log_scale.device))


def beta_vae_terms(cfg: BetaVAEConfig, log_px_z: torch.Tensor, kl: torch.Tensor, step: int) -> dict:
    """Per-image (B,) terms of what BetaVAE trains on at `step`: the beta-ELBO, or Burgess et al.'s capacity
    objective (beta unused) when cfg.capacity_max > 0; lib.losses keys either objective `beta_elbo`."""
    if cfg.capacity_max > 0:
        return capacity_elbo(log_px_z, kl, cfg.gamma, capacity_at(step, cfg.capacity_max, cfg.capacity_steps))
    return beta_elbo(log_px_z, kl, cfg.beta)


class BetaVAE(VAE):
    """The beta-ELBO (or Burgess et al.'s capacity objective) with one reparameterised z per image."""

    def __init__(self, cfg: BetaVAEConfig = BetaVAEConfig()):
        super().__init__(cfg.latent_dim, cfg.widths, cfg.likelihood)
        self.cfg = cfg

    def loss(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        q = self.posterior(x)
        terms = beta_vae_terms(self.cfg, self.log_px_z(x, q.rsample()), q.kl_standard_normal(), step)
        stats = {name: value.detach().mean() for name, value in terms.items()}
        stats["bpd_elbo"] = bits_per_dim(-stats["elbo"])
        return -terms["beta_elbo"].mean() / N_DIMS, stats  # nats per dim keeps the lr scale-free


class IWAE(VAE):
    """The k-sample importance-weighted bound (or the k-sample mean ELBO), optionally with DReG gradients."""

    def __init__(self, cfg: IWAEConfig = IWAEConfig()):
        super().__init__(cfg.latent_dim, cfg.widths, cfg.likelihood)
        self.cfg = cfg

    def loss(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        log_w, z = self.log_weights(x, self.cfg.k, stop_q=self.cfg.dreg)
        bound, elbo = iwae_bound(log_w.detach()), log_w.detach().mean(0)
        if self.cfg.objective == "vae":
            loss = -log_w.mean()
        else:
            loss = dreg_loss(log_w, z) if self.cfg.dreg else iwae_loss(log_w)
        stats = {"bound": bound.mean(), "elbo": elbo.mean(), "bpd_bound": bits_per_dim(-bound.mean())}
        return loss / N_DIMS, stats  # nats per dim keeps the lr scale-free


VAE_TINY = dict(latent_dim=8, widths=(8, 16, 32, 64))
TINY_TRAIN = TrainConfig(steps=20, batch_size=16, lr=1e-3, log_every=5, ckpt_every=10, n_samples=16)
MODELS["beta_vae"] = ModelSpec(BetaVAEConfig, BetaVAE, presets={
    "default": (BetaVAEConfig(), TrainConfig(steps=50_000, batch_size=128, lr=1e-4, n_samples=64, ckpt_every=2000)),
    "tiny": (BetaVAEConfig(**VAE_TINY), TINY_TRAIN),
})
MODELS["iwae"] = ModelSpec(IWAEConfig, IWAE, presets={
    "default": (IWAEConfig(), TrainConfig(steps=50_000, batch_size=64, lr=1e-4, n_samples=64, ckpt_every=2000)),
    "tiny": (IWAEConfig(**VAE_TINY), TINY_TRAIN),
})


# --- NVAE (Vahdat & Kautz 2020): the model and its config live in lib.nvae (models.py stays under ~400 lines) ---
from .nvae import NVAE, NVAEConfig  # noqa: E402

NVAE_REFERENCE = NVAEConfig()  # the reference project's small configuration: 2 scales, 64 channels, 3 groups/scale
NVAE_TINY = NVAEConfig(channels=16, n_scales=2, groups_per_scale=2, latent_channels=4, enc_cells=1, dec_cells=1,
                       n_pre=1, n_post=1, expand=2, n_mix=3, kl_warmup_steps=20)
# Adamax, lr 1e-2 with warm-up then cosine to 1e-4, as the official code; its L2 weight decay of 3e-4 acts on a
# nats-per-image loss, ours is per dimension, hence 3e-4 / 3072. 140k steps of 64 = 200 epochs of the 45k split.
MODELS["nvae"] = ModelSpec(NVAEConfig, NVAE, presets={
    "reference": (replace(NVAE_REFERENCE, kl_warmup_steps=42_000),
                  TrainConfig(steps=140_000, batch_size=64, lr=1e-2, optimizer="adamax", weight_decay=1e-7,
                              warmup_steps=3_500, schedule="cosine", min_lr_ratio=0.01, ema_decay=0.9999,
                              n_samples=64, ckpt_every=2_000)),
    "tiny": (NVAE_TINY, TrainConfig(steps=30, batch_size=16, lr=5e-3, optimizer="adamax", warmup_steps=5,
                                    schedule="cosine", min_lr_ratio=0.01, log_every=5, ckpt_every=10, n_samples=16)),
})


def load_run_model(folder: str | Path, model_name: str, device="cpu") -> tuple[nn.Module, dict]:
    """The EMA weights of the newest checkpoint in run `folder` as an eval-mode `model_name` model, and that
    checkpoint's step, wall_seconds, train_config and model_config. Extra keys in the stored model_config (the
    CLI adds the data copy and split) are ignored; a missing checkpoint or config is a clear error."""
    from .checkpoints import list_checkpoints, load_checkpoint
    found = list_checkpoints(folder) if Path(folder).is_dir() else []
    if not found:
        raise FileNotFoundError(f"no checkpoint in {folder}: run the training that writes it first")
    state = load_checkpoint(found[-1], device)
    if not state.get("model_config"):
        raise ValueError(f"{found[-1]} holds no model_config, so its architecture is unknown: train with "
                         "train(..., model_config=asdict(cfg)) as the notebooks and the CLI do")
    spec = MODELS[model_name]
    names = {f.name for f in fields(spec.config)}
    model = spec.build(spec.config(**{k: v for k, v in state["model_config"].items() if k in names})).to(device)
    model.load_state_dict(state["ema"])
    return model.eval(), {key: state[key] for key in ("step", "wall_seconds", "train_config", "model_config")}
