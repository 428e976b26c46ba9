"""Figures for the notebooks: image grids, per-class grids, pixel histograms, mean images, training curves.

Every plotting function returns a `matplotlib.figure.Figure` and never calls `plt.show()`: a notebook
displays the figure it gets back, and `save_figure` writes it. Figures are made with pyplot (so Jupyter's
inline backend registers its PNG display) and closed from pyplot's registry before they are returned, so a
cell shows each figure once and long loops do not accumulate open figures.

Images follow the project convention `x`: (B, 3, H, W), either float in [0, 1] or uint8 in [0, 255], as a
numpy array or a torch tensor (any device); they are shown as the 8-bit image they round to (values outside
[0, 1] are clipped).
"""
from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from lib import runs
from lib.data import N_LEVELS, to_float, to_uint8

RGB = ("tab:red", "tab:green", "tab:blue")  # line colours for the R, G, B channels


def as_images(x) -> np.ndarray:
    """`x` as uint8 numpy (B, 3, H, W) for display: what an 8-bit PNG of it shows (lib.data.to_uint8)."""
    return to_uint8(x)


def image_grid(x, nrow: int = 8, pad: int = 2) -> np.ndarray:
    """Tile images (B, 3, H, W) into one (rows*(H+pad)+pad, nrow*(W+pad)+pad, 3) HWC array.

    Image i sits in row i // nrow, column i % nrow; the padding (and any unused tile) is white. The result is uint8.
    """
    x = as_images(x)
    if nrow < 1 or pad < 0:
        raise ValueError(f"nrow must be >= 1 and pad >= 0, got nrow={nrow}, pad={pad}")
    n, _, h, w = x.shape
    ncol = min(nrow, max(n, 1))
    nrows = max(math.ceil(n / nrow), 1)
    grid = np.full((nrows * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, img in enumerate(x):
        top, left = pad + (i // nrow) * (h + pad), pad + (i % nrow) * (w + pad)
        grid[top:top + h, left:left + w] = img.transpose(1, 2, 0)  # CHW -> HWC
    return grid


def show_grid(x, nrow: int = 8, title: str | None = None, ax=None, pad: int = 2) -> Figure:
    """A figure showing `image_grid(x, nrow)`; draws into `ax` when given and returns its figure."""
    grid = image_grid(x, nrow, pad)
    if ax is None:
        height, width = grid.shape[:2]
        scale = 1 / 40  # inches per pixel: a 32x32 tile is 0.8 inch
        fig, ax = plt.subplots(figsize=(max(width * scale, 2.0), max(height * scale, 1.0) + (0.3 if title else 0)))
        plt.close(fig)
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax.figure


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
        tiles[c * per_class: c * per_class + len(chosen)] = x[chosen]
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
        part = x[start:start + chunk]
        counts += np.bincount((part.astype(np.int32) + offsets).ravel(), minlength=3 * N_LEVELS)
    return counts.reshape(3, N_LEVELS)


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


def load_records(metrics: str | os.PathLike | Iterable[dict]) -> list[dict]:
    """Metric records from a `metrics.jsonl` path, a run folder holding one, or an iterable of dicts."""
    if isinstance(metrics, (str, os.PathLike)):
        path = Path(metrics)
        path = path / "metrics.jsonl" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no metrics file at {path}: pass a run's metrics.jsonl or its run folder")
        return runs.read_jsonl(path)
    return [dict(record) for record in metrics]


def plot_curves(metrics: str | os.PathLike | Iterable[dict], keys: Sequence[str] | None = None,
                x: str = "step", logy: Sequence[str] = (), smooth: float = 0.0, ncols: int = 3) -> Figure:
    """Training curves: `x` (default "step") on the x axis, one panel per key.

    `keys` defaults to every numeric key besides `x`. `logy` names panels drawn on a log scale. With
    `smooth` in (0, 1) the raw curve is drawn faintly under an exponential moving average with that weight.
    """
    records = [r for r in load_records(metrics) if isinstance(r.get(x), (int, float))]
    if not records:
        raise ValueError(f"no records with a numeric {x!r} field to plot")
    numeric = sorted({k for r in records for k, v in r.items()
                      if k != x and isinstance(v, (int, float)) and not isinstance(v, bool)})
    keys = list(keys) if keys is not None else numeric
    unknown = [k for k in keys if k not in numeric]
    if unknown or not keys:
        raise ValueError(f"keys {unknown or keys} not found among the numeric metrics {numeric}")
    ncols = min(ncols, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 2.8 * nrows), squeeze=False)
    plt.close(fig)
    for ax, key in zip(axes.flat, keys):
        pairs = [(r[x], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        steps, values = np.array(pairs, dtype=np.float64).T
        _draw_curve(ax, steps, values, smooth)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel(x)
        if key in logy:
            ax.set_yscale("log")
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def _draw_curve(ax, steps: np.ndarray, values: np.ndarray, smooth: float) -> None:
    """One curve; with 0 < smooth < 1 the raw values faintly, their exponential moving average on top."""
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth must be in [0, 1), got {smooth}")
    if smooth == 0.0:
        ax.plot(steps, values, linewidth=1.2)
        return
    ax.plot(steps, values, linewidth=0.8, alpha=0.3, color="tab:blue")
    finite = values[np.isfinite(values)]
    average, smoothed = (finite[0] if len(finite) else np.nan), np.empty_like(values)
    for i, value in enumerate(values):
        average = smooth * average + (1 - smooth) * value if np.isfinite(value) else average
        smoothed[i] = average
    ax.plot(steps, smoothed, linewidth=1.4, color="tab:blue")


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write `fig` to `path` (format from the suffix), creating parent folders; the write is atomic."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    runs.atomic_write_bytes(path, buffer.getvalue())
    return path


# --- NCSN figures: the noise ladder, Langevin strips, nearest training neighbours -----------------------

def labelled_grid(tiles, ncol: int, col_labels: Sequence[str] = (), row_labels: Sequence[str] = (),
                  title: str | None = None, pad: int = 2) -> Figure:
    """Images (R * ncol, 3, H, W) row-major as an R x ncol grid with optional column and row labels."""
    tiles = as_images(tiles)
    grid = image_grid(tiles, nrow=ncol, pad=pad)
    h, w = tiles.shape[2:]
    n_rows = math.ceil(len(tiles) / ncol)
    fig, ax = plt.subplots(figsize=(max(ncol * 0.8 + (1.0 if row_labels else 0.2), 2.0), n_rows * 0.8 + 0.6))
    plt.close(fig)
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([pad + c * (w + pad) + w / 2 for c in range(len(col_labels))], labels=list(col_labels),
                  fontsize=7, rotation=45 if max(map(len, col_labels), default=0) > 6 else 0)
    ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(len(row_labels))], labels=list(row_labels), fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def noise_ladder(x, sigmas, seed: int = 0) -> Figure:
    """Each image of x (B, 3, H, W) in [0, 1] perturbed by x + sigma z at every sigma (columns; clipped for display)."""
    import torch  # viz stays importable for the numpy-only notebooks; the ladder draws torch noise

    x = to_float(as_images(x))
    sigmas = [float(s) for s in sigmas]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    tiles = torch.stack([x] + [x + s * noise for s in sigmas], dim=1)  # (B, 1 + L, 3, H, W)
    return labelled_grid(tiles.flatten(0, 1).clamp(0, 1), 1 + len(sigmas), ["clean"] + [f"{s:.3g}" for s in sigmas],
                         title="the noise ladder: x + sigma z (columns: sigma)")


def langevin_strip(trajectory: Sequence, n_images: int = 4, labels: Sequence[str] = (),
                   title: str = "annealed Langevin dynamics") -> Figure:
    """Snapshots of a Langevin chain (a list of (B, 3, H, W) tensors) as one row per image, time left to right."""
    import torch

    snaps = torch.stack([torch.as_tensor(s[:n_images]).float().cpu() for s in trajectory], dim=1)  # (n, S, 3, H, W)
    return labelled_grid(snaps.flatten(0, 1).clamp(0, 1), snaps.shape[1], labels, title=title)


def neighbours_figure(samples, neighbours, distances=None, title: str = "samples and their nearest training images"
                      ) -> Figure:
    """Row i: sample i, then its k nearest training images (neighbours (N, k, 3, H, W)); distances (N, k) label rows."""
    neighbours = np.asarray(neighbours)
    neighbours = to_uint8(neighbours.reshape(-1, *neighbours.shape[2:])).reshape(neighbours.shape)
    tiles = np.concatenate([as_images(samples)[:, None], neighbours], axis=1)  # (N, 1 + k, 3, H, W)
    rows = [f"L2 {float(d[0]):.2f}" for d in np.asarray(distances)] if distances is not None else ()
    cols = ["sample"] + [f"NN {j + 1}" for j in range(neighbours.shape[1])]
    return labelled_grid(tiles.reshape(-1, *tiles.shape[2:]), tiles.shape[1], cols, rows, title=title)
