"""Behavioural tests of lib.viz: grid layout, dtype handling, histogram counts, curves, input checks."""

import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from lib import viz


def numbered_images(n: int, size: int = 4) -> np.ndarray:
    """uint8 (n, 3, size, size) images where image i is filled with value i and channel c adds 100 c."""
    x = (
        np.arange(n, dtype=np.uint8)[:, None, None, None]
        + np.array([0, 100, 200], np.uint8)[None, :, None, None]
    )
    return np.broadcast_to(x, (n, 3, size, size)).copy()


def test_image_grid_places_image_i_at_its_tile():
    x = numbered_images(7, size=4)
    grid = viz.image_grid(x, nrow=3, pad=2)
    assert grid.shape == (3 * 6 + 2, 3 * 6 + 2, 3) and grid.dtype == np.uint8
    for i in range(7):
        top, left = 2 + (i // 3) * 6, 2 + (i % 3) * 6
        np.testing.assert_array_equal(grid[top : top + 4, left : left + 4], x[i].transpose(1, 2, 0))
    assert (grid[:2] == 255).all() and (grid[2 + 2 * 6 :, 2 + 6 :] == 255).all()  # padding and unused tiles


def test_image_grid_uint8_float_and_tensor_inputs_agree():
    x = np.random.default_rng(0).integers(0, 256, (5, 3, 8, 8), dtype=np.uint8)
    from_uint8 = viz.image_grid(x, nrow=2)
    from_float = viz.image_grid(x.astype(np.float32) / 255, nrow=2)
    from_tensor = viz.image_grid(torch.from_numpy(x).float() / 255, nrow=2)
    assert from_uint8.dtype == from_float.dtype == from_tensor.dtype == np.uint8  # shown as the 8-bit image
    np.testing.assert_array_equal(from_float, from_uint8)  # k / 255 rounds back to level k
    np.testing.assert_array_equal(from_tensor, from_uint8)


@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 1, 32, 32), (2, 32, 32, 3)])
def test_wrong_shape_raises_value_error_naming_expected_shape(shape):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        viz.image_grid(np.zeros(shape, np.uint8))


def test_integer_images_other_than_uint8_are_rejected():
    with pytest.raises(ValueError, match="uint8"):
        viz.image_grid(np.zeros((1, 3, 4, 4), np.int64))


def test_show_grid_returns_a_figure():
    assert isinstance(viz.show_grid(numbered_images(6), nrow=3, title="t"), Figure)


def test_compare_curves_reads_a_run_folder_and_skips_its_torn_last_line(tmp_path):
    records = [{"step": s, "loss": 1.0 / (s + 1), "lr": 1e-3, "note": "x"} for s in range(5)]
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records) + '{"step": 5, "lo'
    )
    fig = viz.compare_curves({"run": tmp_path}, ["loss", "lr"], "curves")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "lr"]
    line = fig.axes[0].lines[0]
    np.testing.assert_allclose(line.get_xdata(), range(5))
    np.testing.assert_allclose(line.get_ydata(), [r["loss"] for r in records])
    with pytest.raises(ValueError, match="nothing to draw"):
        viz.compare_curves({"run": tmp_path}, [], "curves")


def test_save_figure_creates_parent_folders(tmp_path):
    path = viz.save_figure(viz.show_grid(numbered_images(2)), tmp_path / "a" / "b" / "grid.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_smoke_figures_carry_the_banner_once_and_real_ones_none(monkeypatch):
    monkeypatch.setenv("WORKBOOK_SMOKE", "1")
    fig = viz.labelled_grid(numbered_images(4), 2)  # labelled_grid is stamped, and so is what calls it
    assert [t.get_text() for t in fig.texts].count(viz.SMOKE_BANNER) == 1
    monkeypatch.setenv("WORKBOOK_SMOKE", "0")
    assert viz.SMOKE_BANNER not in [t.get_text() for t in viz.show_grid(numbered_images(4)).texts]


def test_curve_smoothing_does_not_lag_and_is_labelled():
    values = np.linspace(1000.0, 400.0, 60) + np.random.default_rng(0).normal(0, 10, 60)
    values[30] = np.nan  # a skipped (non-finite) record gets no weight
    smooth = viz.smoothed(values, 0.9)
    assert (
        abs(smooth[-1] - 400.0) < 15 and abs(smooth[0] - 1000.0) < 15
    )  # an EMA of weight 0.9 ends ~90 too high
    assert np.isfinite(smooth).all() and np.std(np.diff(smooth)) < np.nanstd(np.diff(values))
    records = [{"step": i, "loss": float(v), "kl": float(v) / 10} for i, v in enumerate(values)]
    fig = viz.compare_curves({"run": records}, ["loss", "kl"], "curves", smooth=0.9, logy=["loss"])
    assert fig.axes[1].get_ylabel() == viz.UNITS["kl"] and fig.axes[0].get_xlabel() == "optimizer step"
    assert "faint: logged values; bold: smoothed" in fig._suptitle.get_text()
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text() and t.get_visible()]
    assert len(labels) >= 3  # 400-1000 spans less than a decade: 1, 2, 5 per decade still labels it


def test_a_short_irregular_run_is_smoothed_locally_and_never_leaves_its_data():
    # notebook 05's cpu stage 2: 16 records, every 3 steps at first, then every 50; a cosine learning rate to 0
    steps = np.array([1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 50, 100, 150, 200, 250, 300, 304], dtype=float)
    lr = 0.01 * 0.5 * (1 + np.cos(np.pi * steps / 304))
    kl_coeff = np.minimum(steps / 150, 1.0)
    spike = np.full(len(steps), 5.0)
    spike[2] = 2500.0  # one blown-up record, as stage 3's first steps
    # not +-9 of 18 points: that is one line through the whole run
    assert viz.half_window(len(steps), 0.9) == 2
    for values in (lr, kl_coeff, spike):
        line = viz.smoothed(values, 0.9, steps)
        assert values.min() - 1e-12 <= line.min() and line.max() <= values.max() + 1e-12
    assert abs(viz.smoothed(lr, 0.9, steps)[-1]) < 1e-4  # the cosine ends at 0, and so does its line
    assert np.allclose(viz.smoothed(spike, 0.9, steps)[6:], 5.0)  # the spike stays where it was


def test_png_display_is_registered_when_no_backend_did():
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell
    from matplotlib.figure import Figure

    shell = InteractiveShell.instance()
    try:
        png = shell.display_formatter.formatters["image/png"]
        png.pop(Figure, None)
        assert viz.register_png_display() is True and viz.register_png_display() is False
        assert png(viz.show_grid(numbered_images(4)))[:4] == b"\x89PNG"
    finally:
        InteractiveShell.clear_instance()


def _tiny_vaes(n: int = 3):
    from lib.models import BetaVAE, BetaVAEConfig

    torch.manual_seed(0)
    return {
        f"beta={b:g}": BetaVAE(BetaVAEConfig(latent_dim=4, widths=(4, 8), beta=b)).eval()
        for b in [0.5, 1, 4][:n]
    }


def _row_labels(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_yticklabels()]


def test_compare_curves_draws_one_line_per_run_on_shared_axes():
    runs = {
        f"beta={b:g}": [{"step": s, "kl": b * s, "reconstruction": 100.0 - s} for s in range(0, 40, 10)]
        for b in (0.5, 1.0, 2.0, 4.0)
    }
    fig = viz.compare_curves(runs, ["reconstruction", "kl"], "training curves per beta")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2 and all(len(ax.lines) == 4 for ax in axes)  # one line per beta in each panel
    assert axes[0].get_shared_x_axes().joined(axes[0], axes[1])
    assert [ax.get_ylabel() for ax in axes] == [viz.UNITS["reconstruction"], viz.UNITS["kl"]]
    assert all(ax.get_xlabel() == "optimizer step" for ax in axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(runs)
    np.testing.assert_allclose(axes[1].lines[3].get_ydata(), [4.0 * s for s in range(0, 40, 10)])
    assert fig._suptitle.get_text() == "training curves per beta"
    assert [line.get_color() for line in axes[0].lines] == [line.get_color() for line in axes[1].lines]
    many = {"a": [{"step": s, "kl": float(s)} for s in range(viz.MIN_POINTS_TO_SMOOTH)]}
    fig = viz.compare_curves(many, ["kl"], "t", smooth=0.6)
    assert len(fig.axes[0].lines) == 2 and "smoothed" in fig._suptitle.get_text()  # faint logged + smoothed


def test_metric_panels_share_x_and_draw_baselines_as_unjoined_markers():
    panels = [
        ("test likelihood", "test bits/dim", {"IWAE": [5.0, 4.9, 4.8]}),
        ("active units", "active units of 8", {"IWAE": [3, 4, 6]}),
    ]
    baselines = [{"VAE": ([1], [5.1])}, {"VAE": ([1], [3])}]
    fig = viz.metric_panels(
        [1, 5, 50], panels, "training k", "IWAE against k", logx=True, baselines=baselines
    )
    a, b = fig.axes
    assert a.get_shared_x_axes().joined(a, b) and a.get_xscale() == "log"
    assert [a.get_ylabel(), b.get_ylabel()] == ["test bits/dim", "active units of 8"]
    assert a.get_xlabel() == b.get_xlabel() == "training k" and a.get_title() == "test likelihood"
    iwae, vae = a.lines
    np.testing.assert_allclose(iwae.get_ydata(), [5.0, 4.9, 4.8])
    assert vae.get_linestyle() == "None" and list(vae.get_xdata()) == [1] and list(vae.get_ydata()) == [5.1]
    assert iwae.get_color() == b.lines[0].get_color() and vae.get_color() == b.lines[1].get_color()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["IWAE", "VAE"]
    assert [t.get_text() for t in a.get_xticklabels()] == ["1", "5", "50"]
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in b.get_yticks())
    with pytest.raises(ValueError, match="one per panel"):
        viz.metric_panels([1], panels, "k", "t", baselines=[{}])


def test_sweep_samples_hold_one_labelled_row_per_model():
    models = _tiny_vaes()
    fig = viz.sweep_samples(models, n=6, seed=0, title="prior samples per beta")
    assert _row_labels(fig) == list(models) and len(fig.axes[0].get_xticklabels()) == 6
    assert fig.axes[0].images[0].get_array().shape[0] == 2 + 3 * 34  # three rows of 32-pixel tiles
    assert fig.axes[0].get_title() == "prior samples per beta"


def test_sweep_samples_decode_the_same_z_in_every_row():
    from lib.models import BetaVAE, BetaVAEConfig

    model = BetaVAE(BetaVAEConfig(latent_dim=4, widths=(4, 8))).eval()
    grid = viz.sweep_samples({"a": model, "b": model}, n=3).axes[0].images[0].get_array()
    np.testing.assert_array_equal(grid[2:34], grid[36:68])  # same model, same seed: identical rows
