"""Controlled degradations of real images for calibrating sample-quality distances (notebook 06):
additive Gaussian noise, Gaussian blur and JPEG re-compression. All take and return uint8 (N, 3, 32, 32).
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def add_noise(x: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """x + N(0, sigma^2) per subpixel, sigma on the [0, 1] scale, clipped and rounded back to uint8."""
    noise = np.random.default_rng(seed).normal(0.0, sigma * 255, x.shape)
    return np.clip(np.round(x.astype(np.float64) + noise), 0, 255).astype(np.uint8)


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with standard deviation sigma (pixels), reflect padding."""
    radius = max(int(np.ceil(3 * sigma)), 1)
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    taps = taps / taps.sum()
    h = torch.as_tensor(x).float()
    h = F.pad(h, (radius, radius, radius, radius), mode="reflect")
    h = F.conv2d(h, taps.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)  # along width
    h = F.conv2d(h, taps.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)  # along height
    return h.round().clamp(0, 255).to(torch.uint8).numpy()


def jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    """Each image encoded as a JPEG at `quality` (1-95) with PIL and decoded again."""
    out = np.empty_like(x)
    for i, img in enumerate(x):
        buffer = io.BytesIO()
        Image.fromarray(img.transpose(1, 2, 0)).save(buffer, format="JPEG", quality=int(quality))
        out[i] = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).transpose(2, 0, 1)
    return out
