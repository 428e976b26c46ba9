"""Speed: layers that compute what a plain PyTorch layer computes (same parameters, state dict and results), faster
on this project's CPU, measured layer by layer by `python -m lib.bench.layers`. The science files use them as they
would the plain layer; nothing here changes a number beyond floating-point rounding (tests/test_layers.py).

GemmConv2d / GemmConvTranspose2d   the VAEs' convolutions over maps of at most GEMM_MAX_PIXELS pixels as one matrix
                                   product (oneDNN's weight gradient ran at ~0.08 TFLOP/s there)
max_pool_5x5                       the RefineNet's 5x5 max-pooling in channels-last memory on the CPU
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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


def max_pool_5x5(x: torch.Tensor) -> torch.Tensor:
    """5x5 max-pooling at stride 1 (same size), the CRP's pooling. On the CPU it runs in channels-last memory and
    hands back the input's layout: PyTorch's NCHW kernel took 48 ms for (16, 128, 32, 32) on this project's 2-core
    Xeon against 4 ms channels-last (63 vs 19 ms with the backward pass, conversions included;
    `python -m lib.bench.layers`)."""
    if x.device.type != "cpu" or x.is_contiguous(memory_format=torch.channels_last):
        return F.max_pool2d(x, 5, stride=1, padding=2)
    pooled = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), 5, stride=1, padding=2)
    return pooled.contiguous()
