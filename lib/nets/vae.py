"""The convolutional encoder and decoder shared by Beta-VAE and IWAE (nets only: no losses, no configs).

Encoder: four stride-2 4x4 convolutions with BatchNorm (widths 64-128-256-512 by default: 32 -> 16 -> 8 -> 4 -> 2
pixels), flattened to a linear layer giving the posterior's `mu` and `logvar` (each latent_dim). Decoder: the
mirror, a linear layer to 512 x 2 x 2 and transposed convolutions back to 3 x 32 x 32 per-subpixel locations.
"""

from __future__ import annotations

import torch
from torch import nn

from .fast_layers import GemmConv2d, GemmConvTranspose2d

IMAGE_SIZE = 32


def _check(latent_dim: int, widths) -> int:
    """The spatial size after len(widths) halvings; validates the arguments."""
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
    if not widths or min(widths) < 1 or IMAGE_SIZE % 2 ** len(widths):
        raise ValueError(f"widths must be 1 to 5 positive channel counts, got {tuple(widths)}")
    return IMAGE_SIZE // 2 ** len(widths)


class ConvEncoder(nn.Module):
    """x (B, 3, 32, 32) in [0, 1] -> (mu, logvar), each (B, latent_dim)."""

    def __init__(self, latent_dim: int = 128, widths=(64, 128, 256, 512)):
        super().__init__()
        size = _check(latent_dim, widths)
        layers, c_in = [], 3
        for c_out in widths:
            layers += [
                GemmConv2d(c_in, c_out, 4, stride=2, padding=1),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(widths[-1] * size * size, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.features(2 * x - 1)).chunk(2, dim=-1)  # the net sees [-1, 1]
        return mu, logvar


class ConvDecoder(nn.Module):
    """z (B, latent_dim) -> per-subpixel locations (B, 3, 32, 32), unbounded (the model squashes them)."""

    def __init__(self, latent_dim: int = 128, widths=(64, 128, 256, 512)):
        super().__init__()
        self.size = _check(latent_dim, widths)
        self.top = widths[-1]
        self.head = nn.Linear(latent_dim, self.top * self.size * self.size)
        layers, rev = [], list(reversed(widths))
        for c_in, c_out in zip(rev, rev[1:]):
            layers += [
                nn.BatchNorm2d(c_in),
                nn.LeakyReLU(0.2),
                GemmConvTranspose2d(c_in, c_out, 4, stride=2, padding=1),
            ]
        layers += [
            nn.BatchNorm2d(rev[-1]),
            nn.LeakyReLU(0.2),
            GemmConvTranspose2d(rev[-1], 3, 4, stride=2, padding=1),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.head(z).view(-1, self.top, self.size, self.size)  # (B, C_top, s, s)
        return self.body(h)
