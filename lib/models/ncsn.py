"""NCSN: a noise-conditional score network trained by annealed denoising score matching and sampled by
annealed Langevin dynamics (Song & Ermon 2019), with NCSNv2's techniques for the ladder (Song & Ermon 2020).

Symbols: `sigmas` the descending geometric ladder sigma_1 > ... > sigma_L (a buffer); `level` an index into it;
`score` s_theta(x, level) ~ grad_x log p_sigma(x) in the coordinates of x in [0, 1] (the nets see 2x - 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..common.checks import check_field_types
from ..common.sampler_speed import autocast_score, compiled_step, sampler_speed
from ..data import N_DIMS
from ..losses import dsm_loss, per_level_means
from ..nets.ncsn import RefineNet, ScoreUNet
from ..samplers import (
    annealed_langevin,
    annealed_langevin_inpaint,
    geometric_sigmas,
    ladder_ratio,
    langevin_step,
    technique2_n_sigmas,
    technique4_step_lr,
)
from ..train.config import TrainConfig

NCSN_NETS = ("unet", "refinenet")
N_LOGGED_LEVELS = 10  # per-level DSM losses logged for at most this many (evenly spaced) levels


@dataclass(frozen=True)
class NCSNConfig:
    net: str = "unet"  # score net: unet (ScoreUNet) | refinenet (NCSN's RefineNet)
    nf: int = 128  # base channel width of the score net
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)  # unet only: width multiplier per resolution (32, 16, 8, 4)
    n_res_blocks: int = 2  # unet only: residual blocks per resolution
    dropout: float = 0.1  # unet only: dropout inside residual blocks
    scale_by_sigma: bool = True  # NCSNv2 technique 3: score = net(x, sigma) / sigma
    n_sigmas: int = 10  # L, number of noise levels
    sigma_max: float = 1.0  # sigma_1, for data in [0, 1]
    sigma_min: float = 0.01  # sigma_L
    anneal_power: float = 2.0  # lambda(sigma) = sigma^anneal_power weights the levels (eq. 6)
    n_steps_each: int = 100  # T, Langevin steps per level in sample()
    step_lr: float = 2e-5  # epsilon of Alg. 1: alpha_i = step_lr * sigma_i^2 / sigma_L^2
    denoise: bool = True  # sample() ends with the Tweedie step x + sigma_L^2 s(x, L)

    def __post_init__(self):
        check_field_types(self)  # ints, floats (finite), bools and strings of the annotated type
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
            raise ValueError(
                f"NCSNConfig.sigma_min must be < sigma_max, got {self.sigma_min} >= {self.sigma_max}"
            )
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
        self.logged = {
            level: f"dsm_sigma={float(self.sigmas[level]):.3g}"
            for level in sorted({*range(0, cfg.n_sigmas, step), cfg.n_sigmas - 1})
        }

    def score(self, x: torch.Tensor, level) -> torch.Tensor:
        """s_theta(x, sigma_level) for x (B, 3, H, W) near [0, 1]; level an int or (B,) long."""
        if isinstance(level, int):  # a view and a fill kernel: no host-to-device copy (a sync) per step
            sigma = self.sigmas[level].expand(x.shape[0])
            level = torch.full((x.shape[0],), level, dtype=torch.long, device=x.device)
        else:
            level = torch.as_tensor(level, device=x.device).long().expand(x.shape[0])
            sigma = self.sigmas[level]
        out = self.net(2 * x - 1, sigma if self.net.conditioning == "sigma" else level).float()
        return out / sigma.view(-1, 1, 1, 1) if self.cfg.scale_by_sigma else out

    def loss(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        losses, level = dsm_loss(self.score, x, self.sigmas, self.cfg.anneal_power)
        per_level = per_level_means(losses, level, self.cfg.n_sigmas)  # unbiased, over the log window
        return losses.mean(), {name: per_level[lvl] for lvl, name in self.logged.items()}

    def _chain(self, options: dict) -> dict:
        """Sampler options with the config's defaults filled in."""
        defaults = dict(
            n_steps_each=self.cfg.n_steps_each, step_lr=self.cfg.step_lr, denoise=self.cfg.denoise
        )
        return {**defaults, **{k: v for k, v in options.items() if v is not None}}

    @torch.no_grad()
    def sample(
        self,
        n: int,
        x: torch.Tensor | None = None,
        return_trajectory: bool = False,
        keep_every: int | None = None,
        precision: str = "auto",
        compile: bool | str = "auto",
        batch_size: int | None = None,
        **options,
    ):
        """n images (n, 3, 32, 32) in [0, 1] by Alg. 1 from uniform noise (or from x); options: n_steps_each,
        step_lr, denoise. With return_trajectory, also the list of (unclamped) snapshots. Speed: precision="bf16"
        evaluates the net under bf16 autocast (the chain stays fp32), compile=True runs each Langevin step as one
        compiled function, batch_size runs the chains in chunks of that many (default: all n at once). "auto"
        (the default) is bf16 where the device computes it natively and compiled on CUDA
        (lib.common.sampler_speed); precision="fp32", compile=False is the plain chain."""
        x = torch.rand(n, 3, 32, 32, device=self.sigmas.device) if x is None else x
        precision, compile = sampler_speed(x.device, precision, compile)
        score = autocast_score(self.score, x.device.type, precision)
        step = compiled_step(langevin_step) if compile else langevin_step
        chain = dict(
            return_trajectory=return_trajectory, keep_every=keep_every, step=step, **self._chain(options)
        )
        outs = [
            annealed_langevin(score, chunk, self.sigmas, **chain) for chunk in x.split(batch_size or len(x))
        ]
        if not return_trajectory:
            return torch.cat(outs).clamp(0, 1)
        path = [torch.cat(snaps) for snaps in zip(*(trajectory for _, trajectory in outs))]  # (n, ...) each
        return torch.cat([out for out, _ in outs]).clamp(0, 1), path

    def sampler_score(self, device: torch.device | str, precision: str = "auto"):
        """The score as sample() evaluates it on `device` (precision "auto": bf16 autocast where the device computes
        it natively), uncompiled: what a sampling-time estimate must time. Timing plain self.score instead
        overestimated notebook 02's cpu bank by 2.7x (24.9 minutes estimated, 9.1 spent under bf16)."""
        device = torch.device(device)
        return autocast_score(self.score, device.type, sampler_speed(device, precision, False)[0])

    @torch.no_grad()
    def inpaint(self, x_known: torch.Tensor, mask: torch.Tensor, **options) -> torch.Tensor:
        """Fill mask == 0 pixels of x_known (B, 3, 32, 32) in [0, 1]; known pixels are returned exactly."""
        out = annealed_langevin_inpaint(self.score, x_known, mask, self.sigmas, **self._chain(options))
        return torch.where(mask.bool().expand_as(x_known), x_known, out.clamp(0, 1))


def ncsnv2_config(
    sigma_max: float, sigma_min: float = 0.01, n_steps_each: int = 5, base: NCSNConfig | None = None
) -> NCSNConfig:
    """NCSNv2's ladder from sigma_1 = sigma_max (technique 1: the data's largest pairwise distance,
    lib.samplers.largest_pairwise_distance): L by technique 2, step_lr by technique 4 for T = n_steps_each."""
    base = base or NCSNConfig(net="refinenet", scale_by_sigma=True)
    n_sigmas = technique2_n_sigmas(sigma_max, sigma_min, N_DIMS)
    step_lr = technique4_step_lr(n_steps_each, ladder_ratio(sigma_max, sigma_min, n_sigmas), sigma_min)
    return replace(
        base,
        sigma_max=sigma_max,
        sigma_min=sigma_min,
        n_sigmas=n_sigmas,
        n_steps_each=n_steps_each,
        step_lr=step_lr,
        denoise=True,
    )


NCSN_PAPER = NCSNConfig(
    net="refinenet",
    nf=128,
    scale_by_sigma=False,
    n_sigmas=10,
    sigma_max=1.0,
    sigma_min=0.01,
    n_steps_each=100,
    step_lr=2e-5,  # the paper's epsilon; the released code's chain is step_lr=4e-5 in Alg. 1's convention
    denoise=False,
)
NCSN_REFERENCE = NCSNConfig(
    net="unet", nf=128, n_sigmas=50, sigma_max=1.0, sigma_min=0.01, n_steps_each=100, step_lr=2e-5
)
# sigma_1 = 50: technique 1 on CIFAR-10 (NCSNv2 paper); notebook 02 recomputes it from its data copy
NCSN_V2 = ncsnv2_config(50.0, 0.01, 5)
NCSN_TINY = NCSNConfig(
    net="unet",
    nf=16,
    ch_mult=(1, 2),
    n_res_blocks=1,
    dropout=0.0,
    n_sigmas=4,
    sigma_max=1.0,
    sigma_min=0.05,
    n_steps_each=5,
    step_lr=2e-4,
)

PRESETS = {  # name -> (model config, TrainConfig)
    "paper": (
        NCSN_PAPER,
        TrainConfig(
            steps=200_000,
            batch_size=128,
            lr=1e-3,
            ema_decay=0.0,
            grad_clip=0.0,
            n_samples=64,
            ckpt_every=5000,
        ),
    ),
    "reference": (
        NCSN_REFERENCE,
        TrainConfig(steps=100_000, batch_size=128, lr=1e-3, warmup_steps=500, n_samples=64, ckpt_every=5000),
    ),
    "ncsnv2": (
        NCSN_V2,
        TrainConfig(steps=300_000, batch_size=128, lr=1e-4, ema_decay=0.999, n_samples=64, ckpt_every=5000),
    ),
    "tiny": (
        NCSN_TINY,
        TrainConfig(steps=30, batch_size=16, lr=1e-3, log_every=5, ckpt_every=10, n_samples=16),
    ),
}
