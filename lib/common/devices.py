"""The machine a run uses: choosing and naming the device, seeding every generator."""

from __future__ import annotations

import platform
import random

import numpy as np
import torch

from .accelerator import cpu_has_native_bf16


def pick_device(prefer: str | None = None) -> torch.device:
    """`prefer` if given, else CUDA, then Apple MPS, then the CPU."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what `platform` knows), e.g. 'Intel(R) Xeon(R) Processor'."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_device(device: torch.device | str) -> str:
    """A human name for `device`, e.g. 'NVIDIA H100 80GB HBM3' or
    'cpu: Intel(R) Xeon(R) Processor (2 threads, x86_64, native bf16)'."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return f"{device.type} ({platform.machine()})"
    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
    return f"cpu: {cpu_model()} ({torch.get_num_threads()} threads, {platform.machine()}, {bf16})"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
