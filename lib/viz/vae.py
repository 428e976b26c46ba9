"""VAE figures (notebooks 03 and 04): reconstructions, traversals of the most active latent units (static grids,
or an ipywidgets slider when run interactively), interpolations between test images, IWAE best-weight
reconstructions, the rate-distortion curve and metric-against-setting plots.

Comparisons of several models draw them in one figure: `sweep_samples`, `sweep_reconstructions`,
`sweep_traversals` and `sweep_best_weight` are labelled grids with one row (or a few) per model, the row labels
naming the model; `metric_panels` draws several metrics against one setting (beta, k) in panels side by side, with
baselines (a model trained at one setting only) as unjoined markers on the same axes.

A model is any lib.models.VAE: posterior(x) -> q with .mu, decode(z), reconstruct(x), log_weights(x, k).
Images are x (B, 3, 32, 32) in [0, 1] (uint8 is read as /255). Figures follow lib.viz: returned, never shown.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..data import to_float
from .core import labelled_grid, readable_log_axis, stamped

__all__ = [
    "TRAVERSAL_RANGE",
    "best_weight_reconstructions",
    "interpolations",
    "metric_panels",
    "most_active_dims",
    "plot_against",
    "rate_distortion",
    "reconstructions",
    "sweep_best_weight",
    "sweep_reconstructions",
    "sweep_samples",
    "sweep_traversals",
    "traversal_slider",
    "traversal_tiles",
    "traversals",
]

TRAVERSAL_RANGE = (-3.0, 3.0)  # z_j values of a traversal, in prior standard deviations


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def reconstructions(
    model, x, n: int = 8, title: str = "test images (top) and reconstructions at E_q[z] (bottom)"
) -> Figure:
    """Two rows: n images and the decoder's locations at their posterior means."""
    x = to_float(x[:n], _device(model))
    return labelled_grid(
        torch.cat([x, model.reconstruct(x)]).cpu(), len(x), row_labels=["data", "recon"], title=title
    )


def most_active_dims(unit_variance, n: int = 8) -> list[int]:
    """The n latent units with the largest Cov_x(E_q[z_j]) (unit_variance (L,), as for active units), most active first."""
    return torch.as_tensor(unit_variance).float().argsort(descending=True)[:n].tolist()


@torch.no_grad()
def traversal_tiles(model, x, dims: Sequence[int], values: Sequence[float]) -> torch.Tensor:
    """Decode E_q[z|x] of one image x (3, 32, 32) with z_j set to each value: (len(dims) * len(values), 3, 32, 32)."""
    mu = model.posterior(to_float(x[None], _device(model))).mu[0]
    z = mu.repeat(len(dims), len(values), 1)  # (n_dims, n_values, L)
    for row, j in enumerate(dims):
        z[row, :, j] = torch.as_tensor(list(values), dtype=z.dtype, device=z.device)
    return model.decode(z).flatten(0, 1).cpu()


def traversals(model, x, dims: Sequence[int], n_values: int = 9, title: str = "latent traversals") -> Figure:
    """Rows: the given units (most active first); columns: z_j from -3 to 3 with the other units at E_q[z|x]."""
    values = np.linspace(*TRAVERSAL_RANGE, n_values)
    tiles = traversal_tiles(model, x, dims, values)
    return labelled_grid(
        tiles, n_values, [f"{v:+.1f}" for v in values], [f"z_{j}" for j in dims], title=title
    )


def traversal_slider(model, x_all, dims: Sequence[int], n_values: int = 9):
    """An ipywidgets view: pick the image and a value; each row shows one unit set to that value (interactive use)."""
    import ipywidgets as widgets
    from IPython.display import display

    values = np.linspace(*TRAVERSAL_RANGE, n_values)
    out = widgets.Output()

    def redraw(image: int, value: float):
        with out:
            out.clear_output(wait=True)
            tiles = traversal_tiles(model, x_all[image], dims, [value])
            display(
                labelled_grid(
                    tiles, len(dims), [f"z_{j}" for j in dims], title=f"image {image}, z_j = {value:+.1f}"
                )
            )

    controls = widgets.interactive(
        redraw,
        image=widgets.IntSlider(0, 0, len(x_all) - 1),
        value=widgets.SelectionSlider(
            options=[round(float(v), 2) for v in values], value=round(float(values[n_values // 2]), 2)
        ),
    )
    return widgets.VBox([controls, out])


@torch.no_grad()
def interpolations(
    model, x_a, x_b, n_steps: int = 8, title: str = "interpolations between posterior means"
) -> Figure:
    """Row i decodes (1 - t) E_q[z|a_i] + t E_q[z|b_i] for t in [0, 1], framed by the two real images."""
    device = _device(model)
    a, b = to_float(x_a, device), to_float(x_b, device)
    mu_a, mu_b = model.posterior(a).mu, model.posterior(b).mu
    t = torch.linspace(0, 1, n_steps, device=device)[None, :, None]
    middle = model.decode(mu_a[:, None] + t * (mu_b - mu_a)[:, None])  # (B, n_steps, 3, 32, 32)
    tiles = torch.cat([a[:, None], middle, b[:, None]], dim=1)
    cols = ["a"] + [f"{float(v):.2f}" for v in t.flatten()] + ["b"]
    return labelled_grid(tiles.flatten(0, 1).cpu(), n_steps + 2, cols, title=title)


@torch.no_grad()
def best_weight_reconstructions(model, x, k: int = 50, title: str | None = None) -> Figure:
    """Per image: the data, the reconstruction at E_q[z], and the decoded z_i of largest importance weight among k."""
    x = to_float(x, _device(model))
    log_w, z = model.log_weights(x, k)  # (k, B), (k, B, L)
    best = z[log_w.argmax(dim=0), torch.arange(len(x))]  # (B, L)
    tiles = torch.stack([x, model.reconstruct(x), model.decode(best)], dim=1).flatten(0, 1).cpu()
    return labelled_grid(
        tiles,
        3,
        ["data", "E_q[z]", f"best of {k}"],
        title=title or f"best-weight reconstructions (largest w_i among k = {k})",
    )


@stamped
def rate_distortion(
    rates: Sequence[float],
    distortions: Sequence[float],
    labels: Sequence[str],
    title: str = "rate-distortion",
) -> Figure:
    """KL (rate, nats) against -E_q log p(x|z) (distortion, nats), one labelled point per model, joined in order."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    plt.close(fig)
    ax.plot(distortions, rates, "o-")
    for rate, dist, label in zip(rates, distortions, labels):
        ax.annotate(label, (dist, rate), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set(
        xlabel="distortion  -E_q log p(x|z)  [nats / image]",
        ylabel="rate  KL(q || p)  [nats / image]",
        title=title,
    )
    ax.grid(alpha=0.3)
    return fig


@stamped
def plot_against(
    xs: Sequence,
    series: dict[str, Sequence[float]],
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = False,
) -> Figure:
    """One line per series (label -> values at xs): a metric against a setting such as beta or k. Integer series
    (counts such as active units) get integer ticks; the x ticks sit at the settings xs."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    plt.close(fig)
    for label, ys in series.items():
        ax.plot(xs, ys, "o-", label=label)
    if logx:
        readable_log_axis(ax, "x")
    ax.set_xticks(list(xs), labels=[f"{x:g}" for x in xs])  # the settings themselves, not a generic scale
    _integer_ticks(ax, [v for ys in series.values() for v in ys])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return fig


def _integer_ticks(ax, values) -> None:
    """Integer ticks for a panel of counts (active units, steps), with two integers in view at least."""
    if values and all(isinstance(v, (int, np.integer)) for v in values):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if (
            max(values) - min(values) < 2
        ):  # the locator needs two integers in view, or it falls back to fractions
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
    line and its baseline markers match), the others take the colour cycle. The x ticks sit at the settings; count panels (every
    value an int) get integer ticks."""
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


@torch.no_grad()
def sweep_reconstructions(
    models: dict[str, object], x, title: str = "test images (top row) and their reconstructions at E_q[z]"
) -> Figure:
    """The test images x in the top row ("data"), then one row per model (label -> model) of its reconstructions
    at the posterior means; columns are the test images."""
    first = next(iter(models.values()))
    x = to_float(x, _device(first))
    rows = [x.cpu()] + [model.reconstruct(to_float(x, _device(model))).cpu() for model in models.values()]
    return _grid_figure(rows, ["data", *models], [f"test {i}" for i in range(len(x))], title)


def sweep_traversals(
    models: dict[str, object],
    dims: dict[str, Sequence[int]],
    x,
    n_values: int = 9,
    title: str = "latent traversals",
) -> Figure:
    """Traversals of one test image x (3, 32, 32) for several models (label -> model): each model gives one row
    per unit of dims[label] (most active first), labelled '<label>: z_j'; columns are z_j from -3 to 3 prior
    standard deviations with the other units at E_q[z|x]."""
    values = np.linspace(*TRAVERSAL_RANGE, n_values)
    rows, labels = [], []
    for label, model in models.items():
        tiles = traversal_tiles(model, x, dims[label], values)
        rows += list(tiles.view(len(dims[label]), n_values, *tiles.shape[1:]))
        labels += [f"{label}: z_{j}" for j in dims[label]]
    return _grid_figure(rows, labels, [f"{v:+.1f}" for v in values], title)


@torch.no_grad()
def sweep_best_weight(models: dict[str, object], x, k: int = 50, title: str | None = None) -> Figure:
    """The test images x in the top row, then two rows per model (label -> model): its reconstruction at E_q[z]
    and the decoded z_i of the largest importance weight among k posterior samples; columns are the images."""
    rows, labels = [to_float(x, "cpu")], ["data"]
    for label, model in models.items():
        xm = to_float(x, _device(model))
        log_w, z = model.log_weights(xm, k)  # (k, B), (k, B, L)
        best = z[log_w.argmax(dim=0), torch.arange(len(xm))]
        rows += [model.reconstruct(xm).cpu(), model.decode(best).cpu()]
        labels += [f"{label}: E_q[z]", f"{label}: best of {k}"]
    title = title or f"each model's reconstructions at E_q[z] and at the largest w_i of k = {k}"
    return _grid_figure(rows, labels, [f"test {i}" for i in range(len(x))], title)
