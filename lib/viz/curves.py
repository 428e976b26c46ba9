"""Training curves from a run's metrics.jsonl: labelled axes with units, log axes that read, lag-free smoothing."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..common import files
from .core import readable_log_axis, stamped

__all__ = [
    "MIN_POINTS_TO_SMOOTH",
    "UNITS",
    "compare_curves",
    "curve_label",
    "half_window",
    "load_records",
    "smoothed",
]


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
    "bpd_bound": "-L_k [bits / dim]",
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


def half_window(n: int, smooth: float) -> int:
    """Points on each side of the local line: round(smooth / (1 - smooth)), the span of an EMA with that weight,
    but at most a sixth of the n points, so a short run's line stays local instead of fitting one line to it all."""
    return max(1, min(round(smooth / (1 - smooth)), (n - 1) // 6))


def smoothed(values: np.ndarray, smooth: float, x: np.ndarray | None = None) -> np.ndarray:
    """A smoothing without lag: at each point, a least-squares line through the points within +-h of it
    (h = half_window), evaluated there. A line, not a mean, so the ends follow a trend instead of trailing it; it
    is fitted against x (the steps; None: evenly spaced), since logging is denser at a run's start, and clipped to
    the range of the values in its window, so it never leaves the data (a learning rate below 0, a KL weight above
    1). Non-finite values get no weight."""
    y = np.asarray(values, dtype=np.float64)
    h = half_window(len(y), smooth)
    w = np.isfinite(y).astype(np.float64)
    t = np.arange(len(y), dtype=np.float64) if x is None else np.asarray(x, dtype=np.float64)
    t = (t - t.mean()) / (t.std() or 1.0)  # centred and scaled: the running sums of t^2 keep their precision
    y0 = np.where(w > 0, y, 0.0)
    sums = [np.concatenate([[0.0], np.cumsum(v)]) for v in (w, w * t, w * t * t, y0, y0 * t)]
    index = np.arange(len(y))
    lo, hi = np.clip(index - h, 0, len(y)), np.clip(index + h + 1, 0, len(y))
    n, st, stt, sy, sty = (c[hi] - c[lo] for c in sums)
    denom = n * stt - st**2
    slope = np.divide(n * sty - st * sy, denom, out=np.zeros_like(y), where=np.abs(denom) > 1e-12)
    mean_t, mean_y = (
        np.divide(st, n, out=t.copy(), where=n > 0),
        np.divide(sy, n, out=np.full_like(y, np.nan), where=n > 0),
    )
    line = mean_y + slope * (t - mean_t)
    finite = np.where(w > 0, y, np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(finite, h, constant_values=np.nan), 2 * h + 1)
    with warnings.catch_warnings():
        # a window of non-finite values only ("All-NaN slice"): its line is nan too
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.clip(line, np.nanmin(windows, axis=1), np.nanmax(windows, axis=1))


MIN_POINTS_TO_SMOOTH = 10  # fewer logged points are drawn as they are, with markers


@stamped
def compare_curves(
    runs: dict[str, str | os.PathLike | Iterable[dict]],
    keys: Sequence[str],
    title: str,
    x: str = "step",
    smooth: float = 0.0,
    units: dict[str, str] | None = None,
    logy: Sequence[str] = (),
    titles: dict[str, str] | None = None,
) -> Figure:
    """Training curves of several runs on shared axes: one panel per key (titled by `titles`, else the key; y
    labelled with its unit, UNITS updated by `units`), one line per run (label -> metrics.jsonl path, run folder or
    records) in the same colour and line style in every panel (styles cycle, so runs that coincide stay visible),
    one legend naming the runs. With `smooth` in (0, 1) and enough points each run is drawn as its
    smoothing (`smoothed`) over its faint logged values; a run without a key simply has no line in that panel."""
    loaded = {
        label: [r for r in load_records(m) if isinstance(r.get(x), (int, float))] for label, m in runs.items()
    }
    if not keys or not any(loaded.values()):
        raise ValueError(
            f"nothing to draw: keys {list(keys)}, runs with records {[k for k, v in loaded.items() if v]}"
        )
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), sharex=True, squeeze=False)
    plt.close(fig)
    styles = ["-", "--", ":", "-."]
    for i, (label, records) in enumerate(loaded.items()):
        colour, style = f"C{i % 10}", styles[i % len(styles)]
        for ax, key in zip(axes.flat, keys):
            pairs = [(r[x], r[key]) for r in records if isinstance(r.get(key), (int, float))]
            if not pairs:
                continue
            steps, values = np.array(pairs, dtype=np.float64).T
            if smooth and len(values) >= MIN_POINTS_TO_SMOOTH:
                ax.plot(steps, values, linewidth=0.7, alpha=0.25, color=colour)
                ax.plot(
                    steps, smoothed(values, smooth, steps), style, linewidth=1.4, color=colour, label=label
                )
            else:
                ax.plot(
                    steps,
                    values,
                    style,
                    linewidth=1.2,
                    color=colour,
                    label=label,
                    marker="." if len(values) < 20 else None,
                )
    for ax, key in zip(axes.flat, keys):
        ax.set_title((titles or {}).get(key, key), fontsize=10)
        ax.set_xlabel("optimizer step" if x == "step" else x)
        ax.set_ylabel((units or {}).get(key, curve_label(key)), fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
        ax.grid(alpha=0.3)
        if key in logy:
            readable_log_axis(ax)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=min(len(labels), 6),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, -0.02),
    )
    if smooth and any(len(r) >= MIN_POINTS_TO_SMOOTH for r in loaded.values()):
        h = half_window(max(len(r) for r in loaded.values()), smooth)
        title = (
            f"{title}\n(faint: logged values; bold: smoothed by a local line over ±{h} point{'s' * (h != 1)})"
        )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
