"""The machine a run uses: choosing and naming the device, seeding every generator."""

from __future__ import annotations

import platform
import random

import numpy as np
import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """`prefer` if given, else CUDA, then Apple MPS, then the CPU."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device | str) -> str:
    """A human name for `device`, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu (2 threads)'."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
