"""The feature net behind the offline Fréchet distance `fd_c10`: a small pre-activation ResNet for 32x32 images.

Three stages of `n_blocks` residual blocks (He et al. 2016, "Identity Mappings in Deep Residual Networks") at
32x32, 16x16 and 8x8 with widths (w, 2w, 4w); global average pooling gives the penultimate features
(4w dims: 128 for the default w = 32), a linear layer the 10 class logits. Input: x in [0, 1], (B, 3, 32, 32);
the net standardises it with CIFAR-10's channel statistics itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # channel means of the original training split (x in [0, 1])
CIFAR10_STD = (0.2470, 0.2435, 0.2616)  # channel standard deviations


class PreActBlock(nn.Module):
    """BN-ReLU-conv x2 with an identity (or strided 1x1 conv) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = (
            None if stride == 1 and c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride, bias=False)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn1(h))
        skip = h if self.shortcut is None else self.shortcut(a)  # pre-activation shortcut on a downsample
        return skip + self.conv2(F.relu(self.bn2(self.conv1(a))))


class ResNetC10(nn.Module):
    """Pre-activation ResNet: stem conv, stages at 32/16/8 px, BN-ReLU, global pool -> features -> logits."""

    def __init__(self, width: int = 32, n_blocks: int = 2, n_classes: int = 10):
        super().__init__()
        if width < 1 or n_blocks < 1:
            raise ValueError(f"width and n_blocks must be >= 1, got width={width}, n_blocks={n_blocks}")
        self.width, self.n_blocks = width, n_blocks
        self.register_buffer("mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR10_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        blocks, c_in = [], width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n_blocks):
                blocks.append(PreActBlock(c_in, c_out, stride=2 if stage > 0 and i == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.bn_out = nn.BatchNorm2d(c_in)
        self.head = nn.Linear(c_in, n_classes)
        self.n_features = c_in

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, 4 * width) of x in [0, 1], (B, 3, 32, 32)."""
        h = self.blocks(self.stem((x - self.mean) / self.std))
        return F.relu(self.bn_out(h)).mean(dim=(2, 3))  # global average pool: (B, C, 8, 8) -> (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, n_classes)."""
        return self.head(self.features(x))
