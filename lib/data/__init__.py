"""CIFAR-10 for the workbook: loading it, its splits, batches on the device, and data facts.

Owns the public data API: `load_cifar10` (finding, decoding and caching live in `lib.data.sources`: pickled
batches or image folders, decoded once to `x` uint8 (N, 3, 32, 32) and `y` int64 (N,), cached next to the
data), the `CIFAR10` record with its train / fit / val / test splits, `InfiniteBatches` (the device-resident
batch iterator with seeded shuffles and flips, DDP sharding and exact random access), `eval_batch`, the pure-numpy
data facts of notebook 00 (class counts, channel statistics, exact duplicates), and the workbook's one image
converter (`to_float`, `to_uint8`) with the pixel constants `N_LEVELS` and `N_DIMS`.

Folder-sourced arrays are stored in a fixed seeded shuffle (see `lib.data.sources`), so every prefix is
class-mixed. JPEG copies are lossy: bits/dim and Fréchet distances measured on them compare only with
each other, not with published numbers on the original batches.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..common.paths import TRUTHY, repo_root
from . import sources
from .sources import ARRAY_KEYS, CLASSES, DataError

__all__ = [
    "CLASSES",
    "CIFAR10",
    "DataError",
    "InfiniteBatches",
    "N_DIMS",
    "N_LEVELS",
    "channel_stats",
    "class_counts",
    "eval_batch",
    "exact_duplicates",
    "histogram_bits",
    "load_cifar10",
    "resolve_root",
    "to_float",
    "to_uint8",
]

N_LEVELS = 256  # values of an 8-bit subpixel; level k stands for x = k / (N_LEVELS - 1)
N_DIMS = 3 * 32 * 32  # D, subpixels of one CIFAR-10 image (bits/dim divides by it)
SPLITS = ("train", "test", "fit", "val")


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """`root` if given, else `$CIFAR10_DIR`, else `<repo>/data/cifar10`.

    A relative `root` argument is the caller's path (against the working folder). A relative `$CIFAR10_DIR` is
    always taken against the repository root: one environment serves processes with different working folders
    (papermill runs notebooks inside notebooks/), and the variable must mean the same folder in all of them.
    """
    if root is not None:
        return Path(root).expanduser().absolute()
    env = os.environ.get("CIFAR10_DIR")
    if not env:
        return repo_root() / "data" / "cifar10"
    return (repo_root() / Path(env).expanduser()).absolute()  # an absolute (or ~) path replaces repo_root()


@dataclass(frozen=True, eq=False, repr=False)
class CIFAR10:
    """CIFAR-10 decoded to uint8 arrays, with where it came from."""

    x_train: np.ndarray  # uint8 (N_train, 3, 32, 32), 50,000 for the real data
    y_train: np.ndarray  # int64 (N_train,), index into CLASSES
    x_test: np.ndarray  # uint8 (N_test, 3, 32, 32), 10,000 for the real data
    y_test: np.ndarray  # int64 (N_test,)
    source: str  # "pickle" (torchvision's batches) or "folder"
    image_format: str  # "original" for pickles, else "jpeg" / "png" (or "jpeg+png" when mixed)
    root: Path  # the resolved data root

    def split(
        self, name: str, val_size: int = 5000, seed: int = 0, limit: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of `name`: train, test, or the seeded disjoint fit / val partition of train."""
        if name not in SPLITS:
            raise ValueError(f"split name {name!r} is not one of {SPLITS}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit={limit} must be >= 1 (or None for the whole split)")
        if name in ("train", "test"):
            x, y = (self.x_train, self.y_train) if name == "train" else (self.x_test, self.y_test)
            return x[:limit], y[:limit]
        n = len(self.x_train)
        if not 0 < val_size < n:
            raise ValueError(
                f"val_size={val_size} must be between 1 and {n - 1} (the train split has {n} images)"
            )
        order = np.random.default_rng(seed).permutation(n)
        index = np.sort(order[:val_size] if name == "val" else order[val_size:])[:limit]  # keeps stored order
        return self.x_train[index], self.y_train[index]

    @property
    def lossy(self) -> bool:
        """True for JPEG copies: likelihoods and distances are not comparable with papers."""
        return "jpeg" in self.image_format

    def describe(self) -> str:
        """One line of provenance."""
        what = (
            "torchvision's pickled batches (original pixels)"
            if self.source == "pickle"
            else f"image folders ({self.image_format.upper()}{', lossy' if self.lossy else ', lossless'})"
        )
        return f"CIFAR-10 from {what} at {self.root}: {len(self.x_train):,} train / {len(self.x_test):,} test images"

    def __repr__(self) -> str:
        return f"CIFAR10({self.describe()})"


def load_cifar10(
    root: str | os.PathLike | None = None, download: bool | None = None, cache: bool = True
) -> CIFAR10:
    """CIFAR-10 from `root` (see `resolve_root`): pickles first, else image folders; decoded once, cached."""
    root = resolve_root(root)
    source = sources.find_source(root)
    if source is None:
        if download is None:
            download = os.environ.get("CIFAR10_DOWNLOAD", "1").strip().lower() in TRUTHY
        if not download:
            raise DataError(
                sources.missing_message(root, "Downloading is off (download=False or CIFAR10_DOWNLOAD=0).")
            )
        sources.download(root)
        source = sources.find_source(root)
        if source is None:
            raise DataError(
                sources.missing_message(root, "torchvision's download finished but left no batches there.")
            )
    digest = sources.fingerprint(source)
    arrays = sources.read_cache(root, digest) if cache else None
    if arrays is None:
        arrays = sources.decode(source)
        if cache:
            sources.write_cache(root, arrays, digest)
    return CIFAR10(
        **{k: arrays[k] for k in ARRAY_KEYS},
        source=str(arrays["source"]),
        image_format=str(arrays["image_format"]),
        root=root,
    )


def _as_uint8_images(x) -> torch.Tensor:
    """x (numpy or tensor) as a uint8 tensor (N, C, H, W), checking dtype and rank."""
    x = torch.as_tensor(x)
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"x must be uint8 images (N, C, H, W), got {x.dtype} of shape {tuple(x.shape)}")
    return x


class InfiniteBatches:
    """Endless float32 batches (batch_size, 3, 32, 32) in [0, 1] from uint8 images kept on `device`.

    Epoch e visits a permutation drawn from a CPU generator seeded by (seed, e); flips use a per-position
    mask from the same generator. Each global batch holds batch_size * world_size images; rank r takes
    positions [r * batch_size, (r + 1) * batch_size) of it; `batch(step)` is random access, so resume is exact.
    """

    def __init__(
        self,
        x,
        batch_size: int,
        device="cpu",
        seed: int = 0,
        flip: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need batch_size >= 1, world_size >= 1 and 0 <= rank < world_size; got "
                f"batch_size={batch_size}, world_size={world_size}, rank={rank}"
            )
        self.x = _as_uint8_images(x).to(device)  # moved to the device once
        self.n, self.batch_size, self.device = len(self.x), batch_size, self.x.device
        self.seed, self.flip, self.rank, self.world_size = seed, flip, rank, world_size
        self.steps_per_epoch = self.n // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"batch_size={batch_size} x world_size={world_size} exceeds the {self.n} images: "
                f"lower batch_size or use more data"
            )
        self._epoch, self._order, self._flips = None, None, None

    def _load_epoch(self, epoch: int) -> None:
        """Draw epoch `epoch`'s permutation and flip mask on the CPU and move them to the device."""
        if epoch != self._epoch:
            seed = np.random.SeedSequence([self.seed % 2**64, epoch]).generate_state(1, np.uint64)[0]
            generator = torch.Generator().manual_seed(int(seed))
            order = torch.randperm(self.n, generator=generator)
            flips = torch.rand(self.n, generator=generator) < 0.5
            self._epoch, self._order, self._flips = epoch, order.to(self.device), flips.to(self.device)

    def batch(self, step: int) -> torch.Tensor:
        """This rank's float32 batch (batch_size, 3, 32, 32) in [0, 1] for global step `step` (0-based)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        self._load_epoch(epoch)
        start = (k * self.world_size + self.rank) * self.batch_size
        x = to_float(self.x[self._order[start : start + self.batch_size]])
        if self.flip:
            mirror = self._flips[start : start + self.batch_size].view(-1, 1, 1, 1)
            x = torch.where(mirror, x.flip(3), x)  # horizontal flip of the chosen images
        return x


def eval_batch(x, n: int, device="cpu", seed: int = 0) -> torch.Tensor:
    """A fixed float32 batch (n, 3, 32, 32) in [0, 1]: the first n of a seeded permutation, no flips."""
    x = _as_uint8_images(x)
    if not 1 <= n <= len(x):
        raise ValueError(f"n={n} must be between 1 and the {len(x)} images")
    index = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return to_float(x[index.to(x.device)], device)


def class_counts(y) -> np.ndarray:
    """Images per class, int64 (10,)."""
    y = np.asarray(y)
    if y.size and (y.min() < 0 or y.max() >= len(CLASSES)):
        raise ValueError(f"labels must lie in 0..{len(CLASSES) - 1}, got {y.min()}..{y.max()}")
    return np.bincount(y, minlength=len(CLASSES)).astype(np.int64)


def channel_stats(x, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of x / 255 over all pixels of uint8 x (N, 3, H, W); each (3,) float64."""
    x = np.asarray(x)
    total, total_sq = np.zeros(x.shape[1], np.int64), np.zeros(x.shape[1], np.int64)
    for i in range(0, len(x), chunk):
        block = x[i : i + chunk].astype(np.int64)  # exact integer sums, a chunk at a time
        total += block.sum(axis=(0, 2, 3))
        total_sq += (block * block).sum(axis=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean / 255, std / 255


def histogram_bits(train_counts, test_counts) -> tuple[np.ndarray, np.ndarray]:
    """Two independent-pixel reference points per channel, in bits per subpixel, from pixel-value histograms
    (channels, 256): the entropy H(p) of the training histogram p (what a model ignoring every dependence between
    pixels pays on the data it was fitted to) and the cross-entropy -sum_v q(v) log2 p'(v) of the test histogram q
    under p' = p add-one smoothed (so a level unseen in training costs a finite amount), the held-out number.
    Each (channels,) float64; the cross-entropy is at least the test histogram's own entropy (Gibbs)."""
    train, test = np.asarray(train_counts, np.float64), np.asarray(test_counts, np.float64)
    if train.shape != test.shape or train.ndim != 2:
        raise ValueError(f"expected two (channels, levels) count arrays, got {train.shape} and {test.shape}")
    p = train / train.sum(axis=1, keepdims=True)
    entropy = -np.sum(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    smoothed = (train + 1) / (train + 1).sum(axis=1, keepdims=True)
    cross_entropy = -(test * np.log2(smoothed)).sum(axis=1) / test.sum(axis=1)
    return entropy, cross_entropy


def exact_duplicates(a, b) -> list[tuple[int, int]]:
    """All index pairs (i, j) with a[i] and b[j] byte-identical, sorted; a and b may be the same array."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if a.shape[1:] != b.shape[1:] or a.dtype != b.dtype:
        raise ValueError(
            f"a {a.shape[1:]} {a.dtype} and b {b.shape[1:]} {b.dtype} hold different kinds of images"
        )
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)  # one row of bytes per image
    by_hash = defaultdict(list)
    for j, row in enumerate(b):
        by_hash[hashlib.blake2b(row, digest_size=16).digest()].append(j)
    pairs = [
        (i, j)
        for i, row in enumerate(a)
        for j in by_hash.get(hashlib.blake2b(row, digest_size=16).digest(), ())
        if np.array_equal(row, b[j])  # a hash hit is checked byte for byte
    ]
    return sorted(pairs)


def to_float(x, device=None) -> torch.Tensor:
    """Images as float32 in [0, 1] on `device` (default: where they are): uint8 (tensor or array) is read as
    k / 255, float is taken as already in [0, 1]. The one uint8 -> float converter of the workbook."""
    x = torch.as_tensor(x)
    x = x.to(device) if device is not None else x
    return x.float().div_(N_LEVELS - 1) if x.dtype == torch.uint8 else x.float()


def to_uint8(x) -> np.ndarray:
    """Images (N, 3, H, W) in [0, 1] (float tensor on any device, or array) or uint8 -> uint8 numpy, each value
    rounded to the nearest of the 256 levels (values outside [0, 1] are clipped). The one float -> uint8 converter."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype != torch.uint8:
            x = x.float().clamp(0, 1).mul(N_LEVELS - 1).round().to(torch.uint8)
        x = x.cpu().numpy()
    x = np.asarray(x)
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"expected uint8 images in [0, 255] or float images in [0, 1], got dtype {x.dtype}")
    if x.dtype != np.uint8:
        x = np.clip(np.round(x.astype(np.float32) * (N_LEVELS - 1)), 0, N_LEVELS - 1).astype(np.uint8)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images (N, 3, H, W), got shape {x.shape}")
    return x
