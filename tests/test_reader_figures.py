"""What a reader sees: grids with each label above its own grid, no torch.jit warning in a saved notebook, and a
short piece of work without a progress bar."""

from __future__ import annotations

import numpy as np
import pytest

from lib import viz


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
