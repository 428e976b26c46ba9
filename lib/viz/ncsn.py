"""NCSN figures (notebook 02): the noise ladder, a Langevin strip, samples beside their nearest training images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from ..data import to_float, to_uint8
from .core import as_images, labelled_grid

__all__ = ["langevin_strip", "neighbours_figure", "noise_ladder"]


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
