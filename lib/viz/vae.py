"""Figures of the latent-variable notebooks that more than one of them draws: `metric_panels` (03 and 04: several
metrics against one setting, beta or k, in panels side by side, with baselines, a model trained at one setting
only, as unjoined markers on the same axes), `sweep_samples` (03 and 04: one labelled row of prior samples per
model, the same z in every row). A notebook's own figures (reconstructions, traversals, interpolations,
best-weight reconstructions, the rate-distortion curve, NVAE's KL per group) are drawn in its cells.

A model offers sample(n) -> images (n, 3, 32, 32) in [0, 1]. Figures follow lib.viz: returned, never shown.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .core import labelled_grid, readable_log_axis, stamped

__all__ = ["metric_panels", "sweep_samples"]


def _integer_ticks(ax, values) -> None:
    """Integer ticks for a panel of counts (active units, steps), with two integers in view at least."""
    if values and all(isinstance(v, (int, np.integer)) for v in values):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if max(values) - min(values) < 2:  # the locator needs two integers in view, else it shows fractions
            ax.set_ylim(min(values) - 1, max(values) + 1)


@stamped
def metric_panels(
    xs: Sequence,
    panels: Sequence[tuple[str, str, dict[str, Sequence[float]]]],
    xlabel: str,
    title: str,
    logx: bool = False,
    baselines: Sequence[dict[str, tuple[Sequence, Sequence[float]]]] | None = None,
    colours: dict[str, str] | None = None,
) -> Figure:
    """Several metrics against one setting, one panel each, side by side with a shared x axis.

    panels: (panel title, y label, series) with series a label -> values at xs, drawn as joined lines;
    baselines (one dict per panel, or None): label -> (x values, y values) drawn as unjoined markers on the same
    axes (a model trained at one setting, e.g. the VAE at its k). A label has one colour in every panel and one
    entry in the legend (under the panels); `colours` sets some labels' colours (e.g. one per view, so a view's
    line and its baseline markers match), the others take the colour cycle. The x ticks sit at the settings;
    count panels (every value an int) get integer ticks."""
    baselines = list(baselines) if baselines is not None else [{} for _ in panels]
    if len(baselines) != len(panels):
        raise ValueError(f"{len(panels)} panels but {len(baselines)} baseline dicts: give one per panel")
    labels = list(
        dict.fromkeys(
            label for (_, _, series), extra in zip(panels, baselines) for label in [*series, *extra]
        )
    )
    colours = {**{label: f"C{i % 10}" for i, label in enumerate(labels)}, **(colours or {})}
    markers = ["s", "D", "^", "v", "P", "X"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), sharex=True, squeeze=False)
    plt.close(fig)
    ticks = sorted({*xs, *(x for extra in baselines for bx, _ in extra.values() for x in bx)})
    for ax, (panel_title, ylabel, series), extra in zip(axes.flat, panels, baselines):
        for label, ys in series.items():
            ax.plot(xs, ys, "o-", color=colours[label], label=label)
        for i, (label, (bx, by)) in enumerate(extra.items()):
            ax.plot(
                bx,
                by,
                markers[i % len(markers)],
                color=colours[label],
                markersize=8,
                fillstyle="none",
                markeredgewidth=1.6,
                linestyle="none",
                label=label,
            )
        if logx:
            readable_log_axis(ax, "x")
        ax.set_xticks(ticks, labels=[f"{x:g}" for x in ticks])  # the settings themselves, not a generic scale
        _integer_ticks(ax, [v for ys in [*series.values(), *(by for _, by in extra.values())] for v in ys])
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.set_title(panel_title, fontsize=9)
        ax.grid(alpha=0.3)
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_legend_handles_labels()[0]}
    if len(handles) > 1:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="lower center",
            ncol=min(len(handles), 4),
            fontsize=8,
            frameon=False,
            bbox_to_anchor=(0.5, -0.02),
        )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1 if len(handles) > 1 else 0, 1, 1))
    return fig


def _grid_figure(rows: Sequence[torch.Tensor], labels: Sequence[str], col_labels: Sequence[str], title: str):
    """rows (each (ncol, 3, H, W) in [0, 1]) stacked top to bottom as one labelled grid."""
    tiles = torch.cat([torch.as_tensor(r).float().cpu() for r in rows])
    return labelled_grid(tiles, len(rows[0]), list(col_labels), list(labels), title=title)


@torch.no_grad()
def sweep_samples(
    models: dict[str, object], n: int = 8, seed: int = 0, title: str = "prior samples"
) -> Figure:
    """One row of n prior samples per model (label -> model), every row decoding the same z ~ N(0, I) where the
    latent sizes agree (the generator is reseeded per row), so rows differ by the model alone."""
    rows = []
    for model in models.values():
        torch.manual_seed(seed)
        rows.append(model.sample(n).cpu())
    return _grid_figure(rows, list(models), [f"draw {i + 1}" for i in range(n)], title)
