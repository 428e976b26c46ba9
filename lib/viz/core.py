"""What every figure shares: the smoke stamp, PNG display under any backend, image grids, labelled grids,
readable log axes and saving.

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
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter

from ..common import files, paths
from ..data import to_uint8

__all__ = [
    "SMOKE_BANNER",
    "as_images",
    "figure_png",
    "grid_panels",
    "image_grid",
    "labelled_grid",
    "readable_log_axis",
    "register_png_display",
    "save_figure",
    "show_grid",
    "stamp_smoke",
    "stamped",
]

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
        ax.set_title(title, pad=3)  # close to its own grid, not to what is above it
    return ax.figure


@stamped
def grid_panels(
    panels: Sequence[tuple[str, object]],
    nrow: int = 8,
    ncols: int = 2,
    title: str | None = None,
    panel_inches: float | None = None,
) -> Figure:
    """Image grids side by side, `ncols` per row of the figure, each (label, images (B, 3, H, W)) drawn as
    `image_grid(images, nrow)` with its label directly ABOVE its own grid: every figure row reserves the height
    of its labels above its grids, so no label sits under the grid of the row above. All grids are drawn at one
    scale (`panel_inches`: the width of the widest grid; None: 1/40 inch per pixel, at most 12 inches a row)."""
    if not panels:
        raise ValueError("grid_panels needs at least one (label, images) panel")
    grids = [image_grid(images, nrow) for _, images in panels]
    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    widest = max(g.shape[1] for g in grids)
    scale = panel_inches / widest if panel_inches else min(1 / 40, 12 / ncols / widest)
    cell_w = widest * scale
    row_h = [max(g.shape[0] for g in grids[r * ncols : (r + 1) * ncols]) * scale for r in range(nrows)]
    label_h = [
        0.1 + 0.15 * max(str(t).count("\n") + 1 for t, _ in panels[r * ncols : (r + 1) * ncols])
        for r in range(nrows)
    ]
    gap, margin, head = 0.15, 0.05, (0.35 if title else 0.0)
    width = ncols * cell_w + (ncols - 1) * gap + 2 * margin
    height = head + sum(row_h) + sum(label_h) + (nrows - 1) * gap + 2 * margin
    fig = plt.figure(figsize=(width, height))
    plt.close(fig)
    top = height - margin - head  # inches from the bottom: the top of the current figure row
    for r in range(nrows):
        for c, ((label, _), grid) in enumerate(zip(panels[r * ncols : (r + 1) * ncols], grids[r * ncols :])):
            h, w = grid.shape[0] * scale, grid.shape[1] * scale
            left = margin + c * (cell_w + gap)
            bottom = top - label_h[r] - h
            ax = fig.add_axes((left / width, bottom / height, w / width, h / height))
            ax.imshow(grid, interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(label, fontsize=8, pad=3)
        top -= label_h[r] + row_h[r] + gap
    if title:
        fig.suptitle(title, fontsize=10, y=1 - margin / height, va="top")
    return fig


def readable_log_axis(ax, axis: str = "y") -> None:
    """A log axis with labelled ticks at 1, 2, 3 and 5 per decade (plain numbers, not 2e+03), or at about five
    evenly spaced values when the drawn range spans less than ~a decade; minor ticks unlabelled, so no label
    overlaps and every panel has several. Call it after drawing the data."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    # under ~a decade, 1-2-3-5 leaves one label: plain evenly spaced values instead
    narrow = lo > 0 and hi / lo < 20
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


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write `fig` to `path` (format from the suffix), creating parent folders; the write is atomic."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    files.atomic_write_bytes(path, buffer.getvalue())
    return path


# --- labelled grids: images with column and row labels ---------------------------------------------------


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
