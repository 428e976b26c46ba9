"""The independent-pixels baseline: every subpixel its own 256-way categorical,
p(x) = prod_d Cat(x_d; softmax(logits_d)). It ignores all dependence between pixels, so its bits/dim is the
floor any real model must beat; its maximum-likelihood fit is the per-position histogram of the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..common.checks import check_field_types
from ..data import N_DIMS, N_LEVELS
from ..losses import bits_per_dim
from ..train.config import TrainConfig


@dataclass(frozen=True)
class IndependentPixelsConfig:
    init_scale: float = 0.0  # std of the initial logits; 0 starts at the uniform model, exactly 8 bits/dim

    def __post_init__(self):
        check_field_types(self)  # ints, floats (finite), bools and strings of the annotated type
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
        log_p = F.log_softmax(self.logits.float(), dim=-1)  # (D, 256)
        return log_p[torch.arange(N_DIMS, device=x.device), levels].sum(dim=1)  # (B, D) -> (B,)

    def loss(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        nll = -self.log_prob(x)
        bpd = bits_per_dim(nll).mean()
        return nll.mean() / N_DIMS, {"bpd": bpd.detach()}  # nats per dim keeps the lr scale-free

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        levels = torch.distributions.Categorical(logits=self.logits.float()).sample((n,))  # (n, D)
        return levels.float().div(N_LEVELS - 1).reshape(n, 3, 32, 32)


PRESETS = {  # name -> (model config, TrainConfig)
    "default": (IndependentPixelsConfig(), TrainConfig(steps=2000, batch_size=256, lr=1e-2, ema_decay=0.99)),
    "tiny": (
        IndependentPixelsConfig(),
        TrainConfig(steps=20, batch_size=16, lr=1e-2, log_every=5, ckpt_every=10, n_samples=16),
    ),
}
