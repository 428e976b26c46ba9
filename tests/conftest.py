"""Shared fixtures: a tiny CIFAR-10 in torchvision's pickle format, isolated outputs, and small test models."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from lib.common import paths


@pytest.fixture(autouse=True)
def isolated_outputs(tmp_path, monkeypatch):
    """Every test writes outputs under its own tmp folder, never into the repository's outputs/, and sees the
    real profile unless it asks for smoke (`make test` exports WORKBOOK_SMOKE=1 for the notebooks)."""
    monkeypatch.setenv("WORKBOOK_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv(
        "WORKBOOK_SMOKE", "0"
    )  # the full profile, whatever the machine (no CUDA: auto is smoke)
    monkeypatch.delenv("WORKBOOK_PROFILE", raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("CIFAR10_DOWNLOAD", "0")
    yield tmp_path / "outputs"
    paths.adopt_profile(
        None
    )  # a notebook's settings() adopts its profile for the process: not for the next test


def write_cifar_pickles(root, n_per_batch: int = 32, seed: int = 0):
    """torchvision's layout: root/cifar-10-batches-py/{data_batch_1..5, test_batch}; returns (x, y) train."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        y = list(rng.integers(0, 10, size=n_per_batch))
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": x, b"labels": y}, f)
        if name != "test_batch":
            xs.append(x)
            ys += y
    return np.concatenate(xs).reshape(-1, 3, 32, 32), np.array(ys)


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    """A 160-image CIFAR-10 (random pixels) that CIFAR10_DIR points at."""
    root = tmp_path / "cifar"
    write_cifar_pickles(root)
    monkeypatch.setenv("CIFAR10_DIR", str(root))
    return root


class TinyDenoiser(nn.Module):
    """conv-BN-SiLU-conv trained to remove Gaussian noise: uses the RNG in its loss and has BN buffers."""

    def __init__(self, width: int = 8, nan_steps=(), crash_at: int | None = None):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.SiLU(),
            nn.Conv2d(width, 3, 3, padding=1),
        )
        self.nan_steps, self.crash_at = set(nan_steps), crash_at

    def loss(self, x, step):
        if step == self.crash_at:
            raise RuntimeError("simulated crash")
        noisy = x + 0.1 * torch.randn_like(x)
        mse = (self.net(noisy) - x).pow(2).mean()
        if step in self.nan_steps:
            mse = mse * float("nan")
        return mse, {"mse": mse.detach()}

    @torch.no_grad()
    def sample(self, n):
        device = next(self.parameters()).device
        return self.net(torch.rand(n, 3, 32, 32, device=device)).clamp(0, 1)


@pytest.fixture
def images():
    """64 random uint8 images."""
    return torch.randint(
        0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


@pytest.fixture
def no_cxx_compiler():
    """Inductor without a working C++ compiler (CPU), as on a machine without one: the first compiled call raises
    InductorError: InvalidCxxCompiler."""
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    with inductor_config.patch({"cpp.cxx": ("no-such-c++-compiler",)}):
        yield
    torch._dynamo.reset()
