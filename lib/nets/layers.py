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


# Convolutions over maps of at most this many pixels run as one matrix product on the CPU (GemmConv2d below).
GEMM_MAX_PIXELS = 4


def _gemm_path(conv: nn.Module, x: torch.Tensor, small_side: tuple[int, int]) -> bool:
    """Whether `conv` (a plain dense 2-d convolution) takes the matrix-product path for input `x`: on the CPU, no
    groups or dilation, zero padding given as numbers, and a small map (`small_side`: the 2x2 side of the layer)."""
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and conv.groups == 1
        and conv.dilation == (1, 1)
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and small_side[0] * small_side[1] <= GEMM_MAX_PIXELS
    )


class GemmConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters, state dict and results) that computes outputs of at most GEMM_MAX_PIXELS pixels
    on the CPU as one matrix product of unfolded patches (im2col). oneDNN's weight gradient of the VAEs' 4x4 -> 2x2
    layer (256 -> 512 channels, batch 128, bf16) takes 28 ms on this project's 2-core AMX Xeon, about 0.08 TFLOP/s,
    where a bf16 matrix product of the same size runs at about 1.2; at 4x4 outputs oneDNN is faster again
    (`python -m lib.bench.layers` times both). Elsewhere (CUDA, larger maps) it is nn.Conv2d."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        size = ((x.shape[2] + 2 * ph - kh) // sh + 1, (x.shape[3] + 2 * pw - kw) // sw + 1)
        if not _gemm_path(self, x, size):
            return super()._conv_forward(x, weight, bias)
        cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # (B, C*kh*kw, L)
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])  # (B*L, C*kh*kw): one product for the batch
        out = F.linear(rows, weight.flatten(1), bias)  # (B*L, O)
        return out.view(len(x), -1, self.out_channels).transpose(1, 2).reshape(len(x), -1, *size)


class GemmConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d that, on the CPU and for inputs of at most GEMM_MAX_PIXELS pixels, computes each input
    pixel's contribution as one matrix product and sums the overlapping patches with F.fold (col2im, in fp32):
    the mirror of GemmConv2d, for the decoder's 2x2 -> 4x4 layer."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is not None or any(self.output_padding) or not _gemm_path(self, x, x.shape[2:]):
            return super().forward(x, output_size)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        size = ((x.shape[2] - 1) * sh - 2 * ph + kh, (x.shape[3] - 1) * sw - 2 * pw + kw)
        rows = x.flatten(2).transpose(1, 2).reshape(-1, self.in_channels)  # (B*L, C_in)
        cols = torch.matmul(rows, self.weight.flatten(1))  # (B*L, C_out*kh*kw)
        cols = cols.view(len(x), -1, cols.shape[1]).transpose(1, 2)  # (B, C_out*kh*kw, L)
        summed = cols.to(torch.promote_types(cols.dtype, torch.float32))  # bf16 products, fp32 sums
        out = F.fold(summed, size, self.kernel_size, padding=self.padding, stride=self.stride)
        out = out if self.bias is None else out + self.bias[:, None, None]
        return out.to(cols.dtype)
