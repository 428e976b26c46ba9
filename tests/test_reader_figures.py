"""What a reader sees in notebook 02 and elsewhere: the DSM loss of every sigma on one pair of axes, grids with each
label above its own grid, and the printed config changes."""

from __future__ import annotations

import numpy as np
import pytest

from lib import viz


def _records(n: int, sigmas=(1.0, 0.37, 0.14, 0.05)):
    rng = np.random.default_rng(0)
    levels = lambda i: {f"dsm_sigma={s:.3g}": 100 * (1 + s) / (1 + i) + rng.random() for s in sigmas}
    return [dict(step=5 * i, loss=120 / (1 + i) + rng.random(), **levels(i)) for i in range(1, n + 1)]


@pytest.mark.parametrize("n", [3, 30])
def test_the_dsm_loss_per_sigma_is_one_panel_with_one_line_per_sigma(n):
    fig = viz.dsm_loss_per_sigma(_records(n), smooth=0.6)
    total, levels = fig.axes[:2]
    assert len(fig.axes) == 2  # not a panel per sigma
    assert [line.get_label() for line in levels.lines] == ["1", "0.37", "0.14", "0.05"]  # largest sigma first
    assert levels.get_legend().get_title().get_text() == "sigma"
    assert total.get_shared_y_axes().joined(total, levels) and total.get_yscale() == "log"
    for ax in (total, levels):
        assert ax.get_xlabel() == "optimizer step" and "per image" in ax.get_ylabel() and ax.get_title()
    assert len(total.lines) == (2 if n >= 10 else 1)  # raw faintly under the smoothing once there are enough
    with pytest.raises(ValueError, match="dsm_sigma"):
        viz.dsm_loss_per_sigma([{"step": 1, "loss": 2.0}])


def _titles_sit_above_their_own_grids(fig):
    renderer = fig._get_renderer()
    grids = [ax for ax in fig.axes if ax.images]
    for ax in grids:
        title, frame = ax.title.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert title.y0 >= frame.y1 - 1  # above its own grid
        above = [
            o.get_window_extent(renderer) for o in grids if o.get_window_extent(renderer).y0 > frame.y1 + 1
        ]
        overlapping = [b for b in above if b.x0 < title.x1 and title.x0 < b.x1]
        assert all(title.y1 <= b.y0 + 1 for b in overlapping)  # and not over the grid of the row above
    return grids


def test_grid_panels_side_by_side_and_show_grid_keep_the_label_on_their_grid():
    x = np.zeros((16, 3, 32, 32), np.uint8)
    fig = viz.grid_panels([("no final denoising", x), ("with the final denoising step", x)], nrow=8, ncols=1)
    assert len(_titles_sit_above_their_own_grids(fig)) == 2
    _titles_sit_above_their_own_grids(viz.show_grid(x, nrow=8, title="samples"))
    with pytest.raises(ValueError):
        viz.grid_panels([])


def test_loading_the_fid_network_saves_no_torch_jit_warning_into_a_notebook():
    import warnings

    from lib.metrics import inception

    try:
        path = inception.network_path()
    except inception.InceptionUnavailable as err:
        pytest.skip(str(err))
    inception._load.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inception.load_network(path, device="cpu")
        warnings.warn(
            "another FutureWarning", FutureWarning, stacklevel=1
        )  # only torch.jit.load's is silenced
    assert [str(w.message) for w in caught] == ["another FutureWarning"]


def test_short_work_saves_no_progress_bar_only_its_final_line(capsys):
    from lib.common.progress import Progress

    with Progress(16, "classifier features", "img", final_line=False) as bar:
        bar.update(16)
    with Progress(16, "sampling", "img") as bar:
        bar.update(16)
    out, err = capsys.readouterr()
    assert err == ""  # no 0% bar and no blank line where it was cleared
    assert out.startswith("sampling: 16 / 16 img in ") and out.count("\n") == 1
