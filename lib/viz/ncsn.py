"""NCSN figures (notebook 02): the DSM loss per sigma, the noise ladder, a Langevin strip, samples beside their
nearest training images."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..data import to_float, to_uint8
from .core import as_images, labelled_grid, readable_log_axis, stamped
from .curves import MIN_POINTS_TO_SMOOTH, smoothed

__all__ = ["dsm_loss_per_sigma", "langevin_strip", "neighbours_figure", "noise_ladder"]

LEVEL_PREFIX = "dsm_sigma="  # the per-level keys lib.models.ncsn logs
YLABEL = (
    "DSM loss [per image, lambda = sigma^2]"  # lib.losses: summed over the 3,072 dims, weighted by sigma^2
)


@stamped
def dsm_loss_per_sigma(records: Sequence[dict], smooth: float = 0.6) -> Figure:
    """NCSN's training curves in one figure: the total DSM loss (left) and the loss at every logged sigma on one
    pair of shared axes (right, one line per sigma, coloured from the largest sigma to the smallest, a key
    beside them); both log y. With 0 < smooth < 1 and enough points each line is its lag-free smoothing
    (lib.viz.curves.smoothed), the total's raw values faintly beneath."""
    records = [r for r in records if isinstance(r.get("step"), (int, float))]
    keys = sorted(
        {k for r in records for k in r if k.startswith(LEVEL_PREFIX)},
        key=lambda k: -float(k[len(LEVEL_PREFIX) :]),
    )
    if not records or not keys:
        raise ValueError(f"no records with a step and {LEVEL_PREFIX}<sigma> keys to plot")
    fig, (total, levels) = plt.subplots(
        1, 2, figsize=(11, 3.6), sharex=True, sharey=True, width_ratios=(1, 1.25)
    )
    plt.close(fig)
    smoothing = 0 < smooth < 1 and len(records) >= MIN_POINTS_TO_SMOOTH
    marker = "." if len(records) < 20 else None

    def curve(key):
        pairs = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        steps, values = np.array(pairs, dtype=np.float64).reshape(-1, 2).T
        return steps, values, (smoothed(values, smooth, steps) if smoothing else values)

    steps, raw, line = curve("loss")
    if smoothing:
        total.plot(steps, raw, lw=0.8, alpha=0.35, color="tab:blue", label="logged")
    total.plot(
        steps, line, lw=1.4, color="tab:blue", marker=marker, label="smoothed" if smoothing else "logged"
    )
    total.legend(fontsize=7, frameon=False)
    total.set(title="total DSM loss (all sigmas)", ylabel=YLABEL)
    for key, colour in zip(keys, plt.cm.viridis(np.linspace(0, 0.9, len(keys)))):
        steps, _, line = curve(key)
        levels.plot(
            steps, line, lw=1.3, color=colour, marker=marker, label=f"{float(key[len(LEVEL_PREFIX) :]):.3g}"
        )
    shown = "smoothed, " if smoothing else ""
    levels.set(title=f"DSM loss at each sigma ({shown}{len(keys)} logged levels)", ylabel=YLABEL)
    levels.tick_params(labelleft=True)
    levels.legend(
        title="sigma", fontsize=7, title_fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1, 1)
    )
    for ax in (total, levels):
        ax.set_xlabel("optimizer step")
        ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
    readable_log_axis(total)
    fig.tight_layout()
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
