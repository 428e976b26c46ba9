"""Evaluation numbers. Here: bits per dimension. (The evaluation issue adds likelihood bounds and distances.)

bits/dim of 8-bit images with a discrete likelihood is NLL / (D ln 2) with D = 3 * 32 * 32 = 3072 and the NLL
in nats; no extra term is needed because the likelihood already assigns probability to the 256 levels.
"""
from __future__ import annotations

import math

import torch

N_DIMS = 3 * 32 * 32  # D, subpixels of one CIFAR-10 image


def bits_per_dim(nll_nats: torch.Tensor | float, n_dims: int = N_DIMS) -> torch.Tensor | float:
    """Bits per dimension from a per-image negative log-likelihood in nats: nll / (D ln 2)."""
    return nll_nats / (n_dims * math.log(2.0))
