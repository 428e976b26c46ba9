"""Shared building blocks: noise-level embeddings, normalisation layers, residual and attention blocks.

Symbols: `sigma` a noise level (B,), `level` its index in the descending ladder `sigmas` (B,) long,
`emb` a per-sample conditioning vector (B, E).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups of >= 4 channels, shrunk until it divides `channels` (tiny nets)."""
    groups = min(max_groups, max(1, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of a scalar (Tancik et al. 2020; Song et al. 2021 for log sigma): (B,) -> (B, 2n)."""

    def __init__(self, n_features: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("weight", torch.randn(n_features) * scale)  # fixed, not trained

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * t[:, None].float() * self.weight[None, :]  # (B, n)
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the embedding added as a per-channel bias in between (DDPM style)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = group_norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2, self.conv2 = group_norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.skip(x) + h) / math.sqrt(2.0)  # keeps the residual stream's variance from growing


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions, residual."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm, self.qkv, self.proj = group_norm(ch), nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)  # 3 x (B, HW, C)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # (B, HW, C)
        return (x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))) / math.sqrt(2.0)


class CondInstanceNorm2dPlus(nn.Module):
    """Conditional instance norm++ (Song & Ermon 2019, eq. in Appendix A): instance norm that keeps the
    channel means' relative sizes via alpha, with gamma, alpha, beta looked up per noise level."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.channels = channels
        self.norm = nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
        self.embed = nn.Embedding(n_classes, 3 * channels)
        nn.init.normal_(self.embed.weight[:, : 2 * channels], 1.0, 0.02)  # gamma, alpha start near 1
        nn.init.zeros_(self.embed.weight[:, 2 * channels :])  # beta starts at 0

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        means = x.mean(dim=(2, 3))  # (B, C)
        means = (means - means.mean(-1, keepdim=True)) / (means.var(-1, keepdim=True) + 1e-5).sqrt()
        gamma, alpha, beta = self.embed(level).chunk(3, dim=-1)  # 3 x (B, C)
        h = self.norm(x) + (means * alpha)[:, :, None, None]
        return gamma[:, :, None, None] * h + beta[:, :, None, None]
