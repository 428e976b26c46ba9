"""Figures for the notebooks: image grids, per-class grids, pixel histograms, mean images, training curves.

Every plotting function returns a `matplotlib.figure.Figure` and never calls `plt.show()`: a notebook
displays the figure it gets back, and `save_figure` writes it. Figures are made with pyplot (so Jupyter's
inline backend registers its PNG display) and closed from pyplot's registry before they are returned, so a
cell shows each figure once and long loops do not accumulate open figures.

Images follow the project convention `x`: (B, 3, H, W), either float in [0, 1] or uint8 in [0, 255], as a
numpy array or a torch tensor (any device); they are shown as the 8-bit image they round to (values outside
[0, 1] are clipped).

In smoke mode ($WORKBOOK_SMOKE) every figure these functions return carries a banner saying that it checks the
code, not the science (`stamp_smoke`). Importing this module inside an IPython kernel whose matplotlib backend
is not the inline one (e.g. MPLBACKEND=Agg, common on headless servers and in CI) registers a PNG display for
figures, so `display(fig)` shows an image under every backend.
"""

from __future__ import annotations

import functools
import io
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter

from ..common import files, paths
from ..data import N_LEVELS, to_float, to_uint8

__all__ = [
    "MIN_POINTS_TO_SMOOTH",
    "RGB",
    "SMOKE_BANNER",
    "UNITS",
    "as_images",
    "channel_histogram_counts",
    "channel_histograms",
    "class_count_bars",
    "class_grid",
    "curve_label",
    "figure_png",
    "image_grid",
    "labelled_grid",
    "langevin_strip",
    "load_records",
    "mean_images",
    "neighbours_figure",
    "noise_ladder",
    "plot_curves",
    "readable_log_axis",
    "register_png_display",
    "save_figure",
    "show_grid",
    "smoothed",
    "stamp_smoke",
    "stamped",
]

RGB = ("tab:red", "tab:green", "tab:blue")  # line colours for the R, G, B channels
SMOKE_BANNER = "SMOKE RUN: reduced sizes and budgets; checks the code, not the science"


def stamp_smoke(fig: Figure, smoke: bool | None = None) -> Figure:
    """Write SMOKE_BANNER under `fig` once when smoke mode is on (smoke=None reads $WORKBOOK_SMOKE); returns fig."""
    if (paths.is_smoke() if smoke is None else smoke) and not getattr(fig, "_smoke_stamped", False):
        # under everything drawn so far (axis labels may reach below the figure's edge), centred on the figure
        try:  # a closed figure's canvas has no renderer of its own; matplotlib >= 3.6 makes one for measuring
            bottom = fig.get_tightbbox(fig._get_renderer()).y0 / fig.get_figheight()
        except (AttributeError, ValueError):
            bottom = 0.0
        fig.text(
            0.5,
            bottom - 0.02,
            SMOKE_BANNER,
            ha="center",
            va="top",
            fontsize=8,
            color="white",
            fontweight="bold",
            bbox=dict(boxstyle="square,pad=0.3", facecolor="tab:red", edgecolor="none"),
        )
        fig._smoke_stamped = True
    return fig


def stamped(make):
    """Decorator: the figure `make` returns, stamped by `stamp_smoke`."""

    @functools.wraps(make)
    def wrapper(*args, **kwargs):
        return stamp_smoke(make(*args, **kwargs))

    return wrapper


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """`fig` as PNG bytes, cropped to its content (as Jupyter's inline backend shows it)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def register_png_display() -> bool:
    """Inside IPython, make `display(fig)` show a PNG when no backend registered one (e.g. MPLBACKEND=Agg, where
    figures would otherwise print as text). Returns whether it registered the display."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return False
    png = shell.display_formatter.formatters["image/png"]
    try:
        png.lookup_by_type(Figure)
        return False  # the inline backend (or the user) already shows figures
    except KeyError:
        png.for_type(Figure, figure_png)
        return True


register_png_display()


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
        grid[top : top + h, left : left + w] = img.transpose(1, 2, 0)  # CHW -> HWC
    return grid


@stamped
def show_grid(x, nrow: int = 8, title: str | None = None, ax=None, pad: int = 2) -> Figure:
    """A figure showing `image_grid(x, nrow)`; draws into `ax` when given and returns its figure."""
    grid = image_grid(x, nrow, pad)
    if ax is None:
        height, width = grid.shape[:2]
        scale = 1 / 40  # inches per pixel: a 32x32 tile is 0.8 inch
        fig, ax = plt.subplots(
            figsize=(max(width * scale, 2.0), max(height * scale, 1.0) + (0.3 if title else 0))
        )
        plt.close(fig)
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax.figure


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


def load_records(metrics: str | os.PathLike | Iterable[dict]) -> list[dict]:
    """Metric records from a `metrics.jsonl` path, a run folder holding one, or an iterable of dicts."""
    if isinstance(metrics, (str, os.PathLike)):
        path = Path(metrics)
        path = path / "metrics.jsonl" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(
                f"no metrics file at {path}: pass a run's metrics.jsonl or its run folder"
            )
        return files.read_jsonl(path)
    return [dict(record) for record in metrics]


UNITS = {  # y-axis labels of the training curves the notebooks log: quantity [unit]
    "loss": "training loss",
    "reconstruction": "-E_q log p(x|z) [nats / image]",
    "kl": "KL(q || p) [nats / image]",
    "elbo": "ELBO [nats / image]",
    "bound": "L_k [nats / image]",
    "bpd_elbo": "-ELBO [bits / dim]",
    "kl_coeff": "KL weight [0-1]",
    "lr": "learning rate",
    "grad_norm": "gradient L2 norm",
    "spectral": "spectral penalty",
}


def curve_label(key: str) -> str:
    """The y-axis label of a logged metric: UNITS, or for NCSN's per-level keys the weighted DSM loss."""
    if key.startswith("dsm_sigma="):
        return "DSM loss at this sigma (lambda = sigma^2)"
    return UNITS.get(key, key)


@stamped
def plot_curves(
    metrics: str | os.PathLike | Iterable[dict],
    keys: Sequence[str] | None = None,
    x: str = "step",
    logy: Sequence[str] = (),
    smooth: float = 0.0,
    ncols: int = 3,
    units: dict[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """Training curves: `x` (default "step") on the x axis, one panel per key, each y axis labelled with its unit
    (UNITS, updated by `units`), under an optional `title`. `keys` defaults to every numeric key besides `x`; `logy` names panels drawn on a
    log scale. With `smooth` in (0, 1) the raw curve is drawn faintly under a smoothing without lag (`smoothed`),
    and a legend tells the two apart.
    """
    records = [r for r in load_records(metrics) if isinstance(r.get(x), (int, float))]
    if not records:
        raise ValueError(f"no records with a numeric {x!r} field to plot")
    numeric = sorted(
        {
            k
            for r in records
            for k, v in r.items()
            if k != x and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    )
    keys = list(keys) if keys is not None else numeric
    unknown = [k for k in keys if k not in numeric]
    if unknown or not keys:
        raise ValueError(f"keys {unknown or keys} not found among the numeric metrics {numeric}")
    ncols = min(ncols, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    plt.close(fig)
    labels = {k: (units or {}).get(k, curve_label(k)) for k in keys}
    for ax, key in zip(axes.flat, keys):
        pairs = [(r[x], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        steps, values = np.array(pairs, dtype=np.float64).T
        _draw_curve(ax, steps, values, smooth)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("optimizer step" if x == "step" else x)
        ax.set_ylabel(labels[key], fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
        if key in logy:
            readable_log_axis(ax)
    if smooth and len(records) >= MIN_POINTS_TO_SMOOTH:
        axes.flat[0].legend(fontsize=7, frameon=False)
    for ax in axes.flat[len(keys) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def readable_log_axis(ax, axis: str = "y") -> None:
    """A log axis with labelled ticks at 1, 2, 3 and 5 per decade (plain numbers, not 2e+03), or at about five
    evenly spaced values when the drawn range spans less than ~a decade; minor ticks unlabelled, so no label
    overlaps and every panel has several. Call it after drawing the data."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    narrow = (
        lo > 0 and hi / lo < 20
    )  # under ~a decade, 1-2-3-5 leaves one label: plain evenly spaced values instead
    subs = (
        (1.0, 2.0, 3.0, 5.0)
        if lo > 0 and hi / lo < 300
        else (1.0, 3.0)
        if lo > 0 and hi / lo < 1e4
        else (1.0,)
    )
    target.set_major_locator(MaxNLocator(5) if narrow else LogLocator(subs=subs, numticks=16))
    target.set_major_formatter(lambda value, _: f"{value:,.0f}" if value >= 10 else f"{value:.3g}")
    target.set_minor_formatter(NullFormatter())


def smoothed(values: np.ndarray, smooth: float) -> np.ndarray:
    """A smoothing without lag: at each point, a least-squares line through the points within +-h of it
    (h = round(smooth / (1 - smooth)), the span of an EMA with that weight), evaluated there. A line, not a mean,
    so the ends follow a trend instead of trailing it; non-finite values get no weight."""
    y = np.asarray(values, dtype=np.float64)
    h = max(1, round(smooth / (1 - smooth)))
    w = np.isfinite(y).astype(np.float64)
    t = np.arange(len(y), dtype=np.float64)
    y0 = np.where(w > 0, y, 0.0)
    sums = [np.concatenate([[0.0], np.cumsum(v)]) for v in (w, w * t, w * t * t, y0, y0 * t)]
    lo, hi = np.clip(t - h, 0, len(y)).astype(int), np.clip(t + h + 1, 0, len(y)).astype(int)
    n, st, stt, sy, sty = (c[hi] - c[lo] for c in sums)
    denom = n * stt - st**2
    slope = np.divide(n * sty - st * sy, denom, out=np.zeros_like(y), where=np.abs(denom) > 1e-12)
    mean_t, mean_y = (
        np.divide(st, n, out=t.copy(), where=n > 0),
        np.divide(sy, n, out=np.full_like(y, np.nan), where=n > 0),
    )
    return mean_y + slope * (t - mean_t)


MIN_POINTS_TO_SMOOTH = 10  # fewer logged points are drawn as they are, with markers


def _draw_curve(ax, steps: np.ndarray, values: np.ndarray, smooth: float) -> None:
    """One curve; with 0 < smooth < 1 the raw values faintly and their smoothing on top, both labelled."""
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth must be in [0, 1), got {smooth}")
    if (
        smooth == 0.0 or len(values) < MIN_POINTS_TO_SMOOTH
    ):  # a handful of points: smoothing only distorts them
        ax.plot(steps, values, linewidth=1.2, marker="." if len(values) < 20 else None)
        return
    ax.plot(steps, values, linewidth=0.8, alpha=0.35, color="tab:blue", label="logged")
    ax.plot(
        steps,
        smoothed(values, smooth),
        linewidth=1.4,
        color="tab:blue",
        label=f"smoothed (local line, ±{max(1, round(smooth / (1 - smooth)))} points)",
    )


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write `fig` to `path` (format from the suffix), creating parent folders; the write is atomic."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    files.atomic_write_bytes(path, buffer.getvalue())
    return path


# --- NCSN figures: the noise ladder, Langevin strips, nearest training neighbours -----------------------


@stamped
def labelled_grid(
    tiles,
    ncol: int,
    col_labels: Sequence[str] = (),
    row_labels: Sequence[str] = (),
    title: str | None = None,
    pad: int = 2,
) -> Figure:
    """Images (R * ncol, 3, H, W) row-major as an R x ncol grid with optional column and row labels."""
    tiles = as_images(tiles)
    grid = image_grid(tiles, nrow=ncol, pad=pad)
    h, w = tiles.shape[2:]
    n_rows = math.ceil(len(tiles) / ncol)
    fig, ax = plt.subplots(figsize=(max(ncol * 0.8 + (1.0 if row_labels else 0.2), 2.0), n_rows * 0.8 + 0.6))
    plt.close(fig)
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks(
        [pad + c * (w + pad) + w / 2 for c in range(len(col_labels))],
        labels=list(col_labels),
        fontsize=7,
        rotation=45 if max(map(len, col_labels), default=0) > 6 else 0,
    )
    ax.set_yticks(
        [pad + r * (h + pad) + h / 2 for r in range(len(row_labels))], labels=list(row_labels), fontsize=7
    )
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
    return labelled_grid(
        tiles.flatten(0, 1).clamp(0, 1),
        1 + len(sigmas),
        ["clean"] + [f"{s:.3g}" for s in sigmas],
        title="the noise ladder: x + sigma z (columns: sigma)",
    )


def langevin_strip(
    trajectory: Sequence,
    n_images: int = 4,
    labels: Sequence[str] = (),
    title: str = "annealed Langevin dynamics",
) -> Figure:
    """Snapshots of a Langevin chain (a list of (B, 3, H, W) tensors) as one row per image, time left to right."""
    import torch

    snaps = torch.stack(
        [torch.as_tensor(s[:n_images]).float().cpu() for s in trajectory], dim=1
    )  # (n, S, 3, H, W)
    return labelled_grid(snaps.flatten(0, 1).clamp(0, 1), snaps.shape[1], labels, title=title)


def neighbours_figure(
    samples, neighbours, distances=None, title: str = "samples and their nearest training images"
) -> Figure:
    """Row i: sample i, then its k nearest training images (neighbours (N, k, 3, H, W)); distances (N, k) label rows."""
    neighbours = np.asarray(neighbours)
    neighbours = to_uint8(neighbours.reshape(-1, *neighbours.shape[2:])).reshape(neighbours.shape)
    tiles = np.concatenate([as_images(samples)[:, None], neighbours], axis=1)  # (N, 1 + k, 3, H, W)
    rows = [f"L2 {float(d[0]):.2f}" for d in np.asarray(distances)] if distances is not None else ()
    cols = ["sample"] + [f"NN {j + 1}" for j in range(neighbours.shape[1])]
    return labelled_grid(tiles.reshape(-1, *tiles.shape[2:]), tiles.shape[1], cols, rows, title=title)
