"""NVAE's residual cells (Vahdat & Kautz 2020, Fig. 3) and the small layers they share.

Encoder cell: BN-Swish-conv3x3 twice, then squeeze-and-excitation. Decoder cell: BN, 1x1 expansion by `expand`,
BN-Swish, depthwise 5x5, BN-Swish, 1x1 back, BN, SE. Both are residual with the branch scaled by `res_scale`
(0.1 in the official code) so a deep stack starts near the identity (VDVAE/NVAE stability).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_MOMENTUM = 0.05  # the official code's BatchNorm momentum


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


class SqueezeExcite(nn.Module):
    """Channel gates from global average pooling (Hu et al. 2018): x * sigmoid(W2 relu(W1 mean_hw(x)))."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1, self.fc2 = nn.Linear(channels, hidden), nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))  # (B, C)
        return x * gate[:, :, None, None]


class Skip(nn.Module):
    """The residual path: identity, or a 1x1 conv after 2x average pooling / nearest upsampling."""

    def __init__(self, in_ch: int, out_ch: int, resample: str = "none"):
        super().__init__()
        self.resample = resample
        self.proj = nn.Conv2d(in_ch, out_ch, 1) if (in_ch != out_ch or resample != "none") else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            x = F.avg_pool2d(x, 2)
        elif self.resample == "up":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.proj(x)


class EncoderCell(nn.Module):
    """x + res_scale * SE(conv3x3(Swish(BN(conv3x3(Swish(BN(x))))))); stride 2 halves the resolution."""

    def __init__(self, in_ch: int, out_ch: int, down: bool = False, res_scale: float = 0.1):
        super().__init__()
        self.branch = nn.Sequential(
            batch_norm(in_ch),
            nn.SiLU(),
            nn.Conv2d(in_ch, out_ch, 3, stride=2 if down else 1, padding=1),
            batch_norm(out_ch),
            nn.SiLU(),
            nn.Conv2d(out_ch, out_ch, 3, padding=1),
            SqueezeExcite(out_ch),
        )
        self.skip, self.res_scale = Skip(in_ch, out_ch, "down" if down else "none"), res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.res_scale * self.branch(x)


class DecoderCell(nn.Module):
    """The inverted-residual decoder cell (NVAE Fig. 3b); `up` first doubles the resolution (nearest)."""

    def __init__(self, in_ch: int, out_ch: int, expand: int = 6, up: bool = False, res_scale: float = 0.1):
        super().__init__()
        wide = in_ch * expand
        self.up = up
        self.branch = nn.Sequential(
            batch_norm(in_ch),
            nn.Conv2d(in_ch, wide, 1),
            batch_norm(wide),
            nn.SiLU(),
            nn.Conv2d(wide, wide, 5, padding=2, groups=wide),
            batch_norm(wide),
            nn.SiLU(),
            nn.Conv2d(wide, out_ch, 1),
            batch_norm(out_ch),
            SqueezeExcite(out_ch),
        )
        self.skip, self.res_scale = Skip(in_ch, out_ch, "up" if up else "none"), res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(x, scale_factor=2.0, mode="nearest") if self.up else x
        return self.skip(x) + self.res_scale * self.branch(h)


class Head(nn.Module):
    """ELU then conv3x3 to `out_ch` (the official samplers and output layer); zero_init starts it at 0."""

    def __init__(self, in_ch: int, out_ch: int, zero_init: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        if zero_init:
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.elu(x))


def soft_clamp(x: torch.Tensor, bound: float = 5.0) -> torch.Tensor:
    """bound * tanh(x / bound): the official code's smooth limit on means and log-scales of latents."""
    return bound * torch.tanh(x / bound)
