"""Figures of the model comparison (notebook 06): fd_c10 calibration against degraded real images and against the
sample count, panels of samples per model, and the per-model fd_c10, precision/recall and likelihood-vs-distance
views.

Figures follow lib.viz: returned (never shown), stamped with the smoke banner in smoke mode. Many models share one
figure, so points are numbered, the numbers named in a key beside the panels, and close points share one label
instead of printing numbers over each other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .core import as_images, grid_panels, labelled_grid, readable_log_axis, stamped

__all__ = [
    "calibration_figure",
    "degradation_examples",
    "fid_real_floor_figure",
    "full_rows",
    "label_points",
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


def sample_panels(panels: Sequence[tuple[str, object]], n_show: int = 32, ncols: int | None = None) -> Figure:
    """Panels of image grids (label, images (B, 3, H, W)) laid out ncols per row (None: 4, more once there are
    over 16 panels, so 40 models make a squarish figure rather than a tall strip), each label above its own grid
    (lib.viz.core.grid_panels); every grid shows the same number of images in complete rows (full_rows of the
    smallest set), so no grid ends in a half-empty row."""
    ncols = ncols or max(4, math.ceil(math.sqrt(len(panels))))
    n = min([n_show] + [len(images) for _, images in panels])
    grid_cols, n = full_rows(n)
    return grid_panels(
        [(label, images[:n]) for label, images in panels],
        nrow=grid_cols,
        ncols=ncols,
        title=f"{n} samples per model, same seed (first panel: real test images)",
        panel_inches=2.6,
    )


def _spans(numbers: Sequence[int]) -> str:
    """1-based numbers as a short label: [1, 2, 3, 5] -> '1-3, 5'."""
    runs, out = [], []
    for n in sorted(numbers):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    for r in runs:
        out.append(str(r[0]) if len(r) == 1 else f"{r[0]},{r[1]}" if len(r) == 2 else f"{r[0]}-{r[-1]}")
    return ", ".join(out)


def _zoomed(values: Sequence[float], lo: float | None = None, hi: float | None = None, least: float = 0.05):
    """Axis limits around the values with a 12% margin (a span of at least `least`), clipped to [lo, hi]."""
    a, b = float(min(values)), float(max(values))
    pad = max(b - a, least) * 0.12 + (max(least - (b - a), 0) / 2)
    a, b = a - pad, b + pad
    return (a if lo is None else max(a, lo - 0.02 * (b - a))), (
        b if hi is None else min(b, hi + 0.02 * (b - a))
    )


# where a point's label may go, in points from the point: beside it first, then further out with a leader line
_OFFSETS = [
    (dx * r, dy * r) for r in (1, 2, 3.5) for dx, dy in ((7, 5), (7, -9), (-7, 5), (-7, -9), (0, 9), (0, -13))
]


def label_points(ax, xs, ys, numbers: Sequence[int], close_px: float = 7.0) -> list:
    """Scatter the points and label them with their numbers so that no two labels overlap: points within
    `close_px` pixels of each other share one label ('1-3, 5'), and each label takes the first place beside its
    point (then further out, with a leader line) that overlaps no label placed before and stays inside the axes.
    Call it once the axes have their limits and the figure its layout. Returns the labels (matplotlib texts)."""
    ax.scatter(xs, ys, s=36, color="tab:blue", alpha=0.55, zorder=3)
    fig = ax.figure
    renderer = fig._get_renderer()  # a closed figure has no canvas renderer; matplotlib >= 3.6 makes one
    at = ax.transData.transform(np.column_stack([xs, ys]).astype(float)) if len(xs) else np.zeros((0, 2))
    groups: list[list[int]] = []
    for i, point in enumerate(at):  # greedy: join the first group whose first point is close
        for group in groups:
            if np.hypot(*(at[group[0]] - point)) <= close_px:
                group.append(i)
                break
        else:
            groups.append([i])
    frame, placed, texts = ax.get_window_extent(renderer), [], []
    for group in groups:
        x, y = xs[group[0]], ys[group[0]]
        text = None
        for dx, dy in _OFFSETS:
            if text is not None:
                text.remove()
            far = abs(dx) > 8 or abs(dy) > 14
            text = ax.annotate(
                _spans([numbers[i] for i in group]),
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                fontsize=7,
                arrowprops=dict(arrowstyle="-", lw=0.5, color="grey", shrinkA=0, shrinkB=2) if far else None,
                zorder=4,
            )
            box = text.get_window_extent(renderer).expanded(1.0, 1.0).padded(2.5)  # a gap between labels
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                break
        placed.append(text.get_window_extent(renderer).padded(2.5))
        texts.append(text)
    return texts


@stamped
def model_comparison(
    names: Sequence[str],
    fds: Sequence[float],
    floors: Sequence[float],
    precision: Sequence[float],
    recall: Sequence[float],
    bpd: Sequence[float | None],
) -> Figure:
    """One panel per question for models 1..n, and the key (number: name) beside them: how far is each model from
    the real data (fd_c10 as a multiple of the real-data floor at its own n, one bar per model, log axis), does
    it trade precision for recall (precision against recall), and does a better likelihood go with closer samples
    (fd_c10 against test bits/dim; models without bits/dim left out). Points carry their number; close points
    share one label, and no two labels overlap (label_points); the scatter axes are zoomed to the points."""
    n = len(names)
    ratio = [f / fl if fl else float("nan") for f, fl in zip(fds, floors)]
    key_h = 0.16 * n + 0.8  # inches the key needs, one line per model
    height = max(3.8, key_h, 0.2 * n + 1.2)
    fig = plt.figure(figsize=(15, height))
    plt.close(fig)
    grid = fig.add_gridspec(1, 4, width_ratios=(1.0, 1.1, 1.1, 0.75), wspace=0.4)
    bars, pr, lf, key = (fig.add_subplot(grid[0, i]) for i in range(4))
    rows = np.arange(1, n + 1)
    bars.barh(rows, ratio, color="tab:blue", height=0.7)
    bars.axvline(1.0, color="black", lw=1, ls="--")
    bars.set_yticks(rows, labels=[str(i) for i in rows], fontsize=7 if n > 20 else 8)
    bars.set_ylim(n + 0.6, 0.4)
    finite = [r for r in ratio if np.isfinite(r) and r > 0]
    if finite:
        bars.set_xlim(min(0.8, min(finite) * 0.8), max(finite) * 1.3)
        readable_log_axis(bars, "x")
    bars.set(
        xlabel="fd_c10 / real-data floor at the same n (log)",
        ylabel="model (number in the key)",
        title="How far from the data? (dashed: real data)",
    )
    pr.set(
        xlim=_zoomed(recall, 0, 1),
        ylim=_zoomed(precision, 0, 1),
        xlabel="recall (k = 3; 1 = covers the data)",
        ylabel="precision (k = 3; 1 = all on the data)",
        title="Precision against recall",
    )
    has = [i for i, b in enumerate(bpd) if b is not None]
    lf.set(
        xlabel="test bits/dim (lower is better)",
        ylabel="fd_c10 (lower is better)",
        title="Likelihood against sample distance" + ("" if has else "\n(no model reports bits/dim yet)"),
    )
    if has:
        lf.set(
            xlim=_zoomed([bpd[i] for i in has], least=0.02), ylim=_zoomed([fds[i] for i in has], least=0.02)
        )
    for ax in (pr, lf):
        ax.set_box_aspect(1)
        ax.set_anchor("N")
        ax.grid(alpha=0.25)
    key.set_axis_off()
    key.set_anchor("N")
    key.text(0, 1, "key", fontsize=8, fontweight="bold", va="top", transform=key.transAxes)
    line = 0.16 / height / key.get_position().height  # one line, in axes fractions
    for i, name in enumerate(names, 1):
        key.text(
            0,
            1 - (i + 0.5) * line,
            f"{i:>2}  {name}",
            fontsize=7,
            va="top",
            family="monospace",
            transform=key.transAxes,
        )
    fig.subplots_adjust(left=0.05, right=0.99, top=1 - 0.55 / height, bottom=0.9 / height)
    label_points(pr, list(recall), list(precision), list(rows))
    label_points(lf, [bpd[i] for i in has], [fds[i] for i in has], [i + 1 for i in has])
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
            xlabel="what was done to the test images",
            ylabel="FID",
            title=f"degraded test images vs train (n = {degraded[0]['n']:,} vs "
            f"{degraded[0]['n_reference']:,})",
        )
    fig.tight_layout()
    return fig
