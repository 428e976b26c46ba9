"""Figures of the data itself (notebook 00): per-class grids, class counts, channel histograms, mean images."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..data import N_LEVELS
from .core import as_images, image_grid, stamped

__all__ = [
    "RGB",
    "channel_histogram_counts",
    "channel_histograms",
    "class_count_bars",
    "class_grid",
    "mean_images",
]

RGB = ("tab:red", "tab:green", "tab:blue")  # line colours for the R, G, B channels


@stamped
def class_grid(x, y, classes: Sequence[str], per_class: int = 10, pad: int = 2) -> Figure:
    """One row per class holding its first `per_class` images, class names as row labels.

    A class with fewer than `per_class` images leaves its remaining tiles white.
    """
    x, y = as_images(x), np.asarray(y.detach().cpu() if hasattr(y, "detach") else y)
    if y.shape != (len(x),):
        raise ValueError(f"expected labels of shape ({len(x)},) matching the images, got shape {y.shape}")
    h, w = x.shape[2:]
    tiles = np.full((len(classes) * per_class, *x.shape[1:]), 255 if x.dtype == np.uint8 else 1.0, x.dtype)
    for c in range(len(classes)):
        chosen = np.flatnonzero(y == c)[:per_class]
        tiles[c * per_class : c * per_class + len(chosen)] = x[chosen]
    grid = image_grid(tiles, nrow=per_class, pad=pad)
    fig, ax = plt.subplots(figsize=(per_class * 0.8 + 1.2, len(classes) * 0.8))
    plt.close(fig)
    ax.imshow(grid, interpolation="nearest")
    ax.set_yticks([pad + c * (h + pad) + h / 2 for c in range(len(classes))], labels=list(classes))
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    return fig


@stamped
def class_count_bars(counts: dict[str, Sequence[int]], classes: Sequence[str]) -> Figure:
    """Grouped bars of images per class, one bar colour per split, e.g. {"train": (10,), "test": (10,)}."""
    for split, values in counts.items():
        if len(values) != len(classes):
            raise ValueError(f"expected {len(classes)} counts for split {split!r}, got {len(values)}")
    width = 0.8 / max(len(counts), 1)
    fig, ax = plt.subplots(figsize=(8, 3))
    plt.close(fig)
    for k, (split, values) in enumerate(counts.items()):
        ax.bar(np.arange(len(classes)) + (k - (len(counts) - 1) / 2) * width, values, width, label=split)
    ax.set_xticks(range(len(classes)), labels=list(classes), rotation=30, ha="right", rotation_mode="anchor")
    ax.set_ylabel("images")
    ax.legend(frameon=False, ncols=len(counts), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    return fig


def channel_histogram_counts(x, chunk: int = 4096) -> np.ndarray:
    """Counts (3, 256) of each pixel value per channel; float input is quantised with round(255 x).

    Counted with one np.bincount per chunk of images (channel c's values offset by 256 c), so 60k images
    take about a second and never need a full-size integer copy.
    """
    x = as_images(x)
    offsets = (np.arange(3, dtype=np.int32) * N_LEVELS)[None, :, None, None]
    counts = np.zeros(3 * N_LEVELS, dtype=np.int64)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk]
        counts += np.bincount((part.astype(np.int32) + offsets).ravel(), minlength=3 * N_LEVELS)
    return counts.reshape(3, N_LEVELS)


@stamped
def channel_histograms(x=None, counts: np.ndarray | None = None, log: bool = False) -> Figure:
    """Per-channel histograms of pixel values over the 256 levels (RGB colours), as fractions of pixels.

    Pass the images `x`, or precomputed `counts` (3, 256) from `channel_histogram_counts`.
    """
    if (x is None) == (counts is None):
        raise ValueError("pass exactly one of x (images) or counts (3, 256)")
    counts = channel_histogram_counts(x) if counts is None else np.asarray(counts)
    if counts.shape != (3, N_LEVELS):
        raise ValueError(f"expected counts of shape (3, {N_LEVELS}), got shape {counts.shape}")
    fractions = counts / counts.sum(axis=1, keepdims=True)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    plt.close(fig)
    for channel, (name, colour) in enumerate(zip("RGB", RGB)):
        ax.stairs(fractions[channel], np.arange(N_LEVELS + 1) - 0.5, color=colour, label=name, linewidth=1.2)
    ax.set_xlim(-0.5, N_LEVELS - 0.5)
    ax.set_xlabel("pixel value (0-255)")
    ax.set_ylabel("fraction of pixels")
    if log:
        ax.set_yscale("log")
    ax.legend(frameon=False)
    return fig


@stamped
def mean_images(x, y=None, classes: Sequence[str] | None = None) -> Figure:
    """The mean image of `x`, followed by the mean image of each class when labels `y` and `classes` are given."""
    x = as_images(x)
    scale = float(N_LEVELS - 1)
    means = [("all", x.mean(axis=0, dtype=np.float64) / scale)]
    if y is not None:
        y = np.asarray(y)
        names = classes if classes is not None else [str(c) for c in np.unique(y)]
        means += [(name, x[y == c].mean(axis=0, dtype=np.float64) / scale) for c, name in enumerate(names)]
    fig, axes = plt.subplots(1, len(means), figsize=(1.3 * len(means), 1.6), squeeze=False)
    plt.close(fig)
    for ax, (name, mean) in zip(axes[0], means):
        ax.imshow(np.clip(mean.transpose(1, 2, 0), 0, 1), interpolation="nearest")  # CHW -> HWC
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    return fig
