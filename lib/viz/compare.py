"""Figures of the model comparison (notebook 06): fd_c10 calibration against degraded real images and against the
sample count, panels of samples per model, and the per-model fd_c10, precision/recall and likelihood-vs-distance
views.

Figures follow lib.viz: returned (never shown), stamped with the smoke banner in smoke mode. Many models share one
figure, so points are numbered and the numbers named in a key instead of piling long labels onto the axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .core import as_images, image_grid, labelled_grid, readable_log_axis, stamped

__all__ = [
    "calibration_figure",
    "degradation_examples",
    "fid_real_floor_figure",
    "full_rows",
    "model_comparison",
    "sample_panels",
    "spread_figure",
]


def full_rows(n: int, max_cols: int | None = None) -> tuple[int, int]:
    """(columns, images shown) for a grid of up to n images with no incomplete last row: columns = floor(sqrt(n))
    (at most max_cols), images = the largest multiple of columns <= n."""
    cols = max(1, math.isqrt(max(n, 1)))
    cols = min(cols, max_cols) if max_cols else cols
    return cols, (n // cols) * cols


@stamped
def calibration_figure(calibration: dict[str, list[tuple]], floor_fd: float) -> Figure:
    """One panel per degradation family: fd_c10 (results with .fd) against the level, with the real-data floor;
    JPEG quality axes are inverted so stronger degradation is always to the right."""
    fig, axes = plt.subplots(1, len(calibration), figsize=(4.2 * len(calibration), 3.2), squeeze=False)
    plt.close(fig)
    for ax, (family, results) in zip(axes[0], calibration.items()):
        ax.plot(
            [level for level, _ in results], [r.fd for _, r in results], "o-", label="degraded test images"
        )
        ax.axhline(floor_fd, color="grey", ls="--", label="floor (clean test vs train)")
        ax.set(xlabel=family, ylabel="fd_c10 (lower is closer to the data)", title=f"fd_c10 against {family}")
        if "JPEG" in family:
            ax.invert_xaxis()
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


@stamped
def spread_figure(
    spread: dict[int, Sequence[float]], ylabel: str = "fd_c10 (test subset vs train)"
) -> Figure:
    """A distance against the sample count n (log axis): the mean over the repeats at each n (spread maps n to
    the values of its random subsets), with error bars of one standard deviation (ddof = 1)."""
    ns = sorted(spread)
    values = [np.asarray(spread[n], dtype=float) for n in ns]
    if any(len(v) < 2 for v in values):
        raise ValueError("each sample count needs at least 2 repeats for a standard deviation")
    fig, ax = plt.subplots(figsize=(5, 3.4))
    plt.close(fig)
    means, stds = [v.mean() for v in values], [v.std(ddof=1) for v in values]
    ax.errorbar(ns, means, yerr=stds, fmt="o-", capsize=4)
    readable_log_axis(ax, "x")
    repeats = sorted({len(v) for v in values})
    title = f"{ylabel.split(' (')[0]} against sample count (mean ± std over {', '.join(map(str, repeats))} subsets)"
    ax.set(xlabel="samples n", ylabel=ylabel, title=title)
    fig.tight_layout()
    return fig


@stamped
def degradation_examples(original, degradations: dict[str, list[tuple]]) -> Figure:
    """One row per degradation family: the original image, then that image at each level (column labels in the
    row's own unit; shorter rows end in white tiles)."""
    n_cols = 1 + max(len(levels) for levels in degradations.values())
    blank = np.full_like(as_images(original[:1]), 255)
    tiles = []
    for levels in degradations.values():
        row = [as_images(original[:1])] + [as_images(x[:1]) for _, x in levels]
        tiles += row + [blank] * (n_cols - len(row))
    rows = [
        f"{family}: " + ", ".join(f"{level:g}" for level, _ in levels)
        for family, levels in degradations.items()
    ]
    fig = labelled_grid(
        np.concatenate(tiles),
        n_cols,
        ["original"] + [f"level {i}" for i in range(1, n_cols)],
        rows,
        title="one test image, degraded (levels in the row label)",
    )
    fig.set_size_inches(n_cols * 0.8 + 2.6, len(rows) * 0.8 + 0.8)
    return fig


@stamped
def sample_panels(panels: Sequence[tuple[str, object]], n_show: int = 32, ncols: int = 4) -> Figure:
    """Panels of image grids (title, images (B, 3, H, W)) laid out ncols per row; every grid shows the same number
    of images in complete rows (full_rows of the smallest set), so no grid ends in a half-empty row."""
    n = min([n_show] + [len(images) for _, images in panels])
    grid_cols, n = full_rows(n)
    ncols = min(ncols, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 3.3 * nrows), squeeze=False)
    plt.close(fig)
    for ax, (title, images) in zip(axes.flat, panels):
        ax.imshow(image_grid(images[:n], nrow=grid_cols), interpolation="nearest")
        ax.set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"{n} samples per model (first panel: real test images)", fontsize=10)
    fig.tight_layout(
        rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight())
    )  # room for the suptitle above the panel titles
    return fig


def _numbered(ax, xs, ys) -> None:
    """Scatter points drawn as their 1-based index, so crowded points stay readable beside a key."""
    ax.scatter(xs, ys, s=90, color="tab:blue", alpha=0.35)
    for i, (x, y) in enumerate(zip(xs, ys), 1):
        ax.annotate(str(i), (x, y), ha="center", va="center", fontsize=7)


@stamped
def model_comparison(
    names: Sequence[str],
    fds: Sequence[float],
    floors: Sequence[float],
    precision: Sequence[float],
    recall: Sequence[float],
    bpd: Sequence[float | None],
) -> Figure:
    """Three panels for models 1..n: fd_c10 as horizontal bars with the real-data floor at the same n, precision
    against recall, and fd_c10 against test bits/dim (models without bits/dim left out); a key names the numbers."""
    n = len(names)
    fig, axes = plt.subplots(1, 3, figsize=(15, max(3.4, 0.28 * n + 1.4)), width_ratios=(1.4, 1, 1))
    plt.close(fig)
    labels = [f"{i}. {name}" for i, name in enumerate(names, 1)]
    rows = np.arange(n)
    axes[0].barh(rows, fds, color="tab:blue")
    axes[0].scatter(floors, rows, marker="|", s=200, color="black", zorder=3)
    axes[0].set_yticks(rows, labels=labels, fontsize=7)
    axes[0].invert_yaxis()
    axes[0].set(
        xlabel="fd_c10 (lower is better; black tick: real-data floor at the same n)", title="fd_c10 per model"
    )
    _numbered(axes[1], recall, precision)
    top = (
        max([0.05, *recall, *precision]) * 1.15
    )  # zoomed to the points: [0, 1] piles weak models into a corner
    axes[1].set(
        xlim=(-0.03 * top, top if top < 0.8 else 1.05),
        ylim=(-0.03 * top, top if top < 0.8 else 1.05),
        xlabel="recall",
        ylabel="precision",
        title="precision vs recall (k = 3; numbers as in the key)",
    )
    has = [i for i, b in enumerate(bpd) if b is not None]
    _numbered(axes[2], [bpd[i] for i in has], [fds[i] for i in has])
    for point, i in zip(axes[2].texts, has):
        point.set_text(str(i + 1))
    axes[2].set(
        xlabel="test bits/dim",
        ylabel="fd_c10",
        title="likelihood vs sample distance" + ("" if has else " (no bits/dim yet)"),
    )
    fig.tight_layout()
    return fig


def fid_real_floor_figure(cal: dict) -> Figure:
    """The FID calibration (outputs/results/fid_calibration.json) in two panels: real test images against as many
    training images as n grows (log-log; the test-halves point and the published anchor on the original batches
    beside them), and the FID of degraded test images against the clean baseline at their n. Not smoke-stamped:
    it draws the committed calibration, whatever mode the notebook runs in."""
    rows = cal["comparisons"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.3]})
    plt.close(fig)
    curve = sorted(
        (r["n"], r["fid"]) for r in rows if r["comparison"] == "test vs train" and r["n"] == r["n_reference"]
    )
    if curve:
        left.plot(*zip(*curve), "o-", label="test vs train, n vs n (this copy)")
        for n, fid in curve:
            left.annotate(f"{fid:.1f}", (n, fid), textcoords="offset points", xytext=(6, 4), fontsize=7)
    halves = [(r["n"], r["fid"]) for r in rows if r["comparison"] == "test halves"]
    if halves:
        left.plot(*zip(*halves), "s", color="tab:green", label="test half vs test half")
    published = cal.get("published")
    if published:
        left.plot(
            [published["n"]],
            [published["fid"]],
            "*",
            ms=13,
            color="tab:red",
            label=f"original CIFAR-10, published ({published['fid']:.2f})",
        )
    left.set(xlabel="n (images per side)", ylabel="FID", title="FID between real image sets")
    if curve or halves:
        readable_log_axis(left, "x")
        readable_log_axis(left, "y")
    left.legend(fontsize=7, frameon=False)
    degraded = [r for r in rows if r.get("degradation")]
    if degraded:
        label = lambda r: (
            "clean"
            if r["degradation"] == "none"
            else f"JPEG q{r['quality']} again"
            if r["degradation"] == "jpeg"
            else f"{r['degradation']} σ {r['sigma']}"
        )
        base = next((r["fid"] for r in degraded if r["degradation"] == "none"), None)
        bars = right.bar(range(len(degraded)), [r["fid"] for r in degraded], color="tab:blue")
        right.bar_label(bars, fmt="%.1f", fontsize=7)
        right.set_xticks(
            range(len(degraded)), [label(r) for r in degraded], rotation=25, ha="right", fontsize=8
        )
        if base is not None:
            right.axhline(base, color="grey", ls="--", lw=1, label="clean test vs train")
            right.legend(fontsize=7, frameon=False)
        right.set(
            ylabel="FID",
            title=f"degraded test images vs train (n = {degraded[0]['n']:,} vs "
            f"{degraded[0]['n_reference']:,})",
        )
    fig.tight_layout()
    return fig
