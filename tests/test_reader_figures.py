"""What a reader sees in notebook 06: grids with each label above its own grid, a model summary that stays
readable with 4 or 40 runs, and the printed config changes."""

from __future__ import annotations

import types

import numpy as np
import pytest

from lib import viz
from lib.models import MODELS
from lib.viz import compare as viz_compare
from lib.workbook import setups


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


def test_sample_panels_put_each_label_above_its_own_grid():
    rng = np.random.default_rng(0)
    panels = [("real (test)", rng.integers(0, 255, (40, 3, 32, 32), dtype=np.uint8))] + [
        (f"beta_vae-beta{i}-tiny\n(seed 1, from bank)", rng.integers(0, 255, (36, 3, 32, 32), dtype=np.uint8))
        for i in range(7)
    ]
    fig = viz.sample_panels(panels, 32, ncols=4)
    grids = _titles_sit_above_their_own_grids(fig)
    assert [ax.get_title() for ax in grids] == [label for label, _ in panels]
    assert {ax.images[0].get_array().shape for ax in grids} == {(6 * 34 + 2, 5 * 34 + 2, 3)}  # 30 images each
    assert "30 samples per model" in fig._suptitle.get_text()
    many = viz.sample_panels([(f"run {i}", panels[1][1]) for i in range(41)], 16)
    width, height = many.get_size_inches()
    assert 0.5 < height / width < 1.5  # 41 models: a squarish figure, not a strip four grids wide


def test_grid_panels_side_by_side_and_show_grid_keep_the_label_on_their_grid():
    x = np.zeros((16, 3, 32, 32), np.uint8)
    fig = viz.grid_panels([("no final denoising", x), ("with the final denoising step", x)], nrow=8, ncols=1)
    assert len(_titles_sit_above_their_own_grids(fig)) == 2
    _titles_sit_above_their_own_grids(viz.show_grid(x, nrow=8, title="samples"))
    with pytest.raises(ValueError):
        viz.grid_panels([])


def _summary(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    names = [f"beta_vae-beta{i}-tiny" if i % 3 else f"iwae-iwae-k{i}-equal-time" for i in range(n)]
    fds = list(26.2 + rng.random(n) * 0.5)
    pile = n // 2  # half the models at (0, 0), a quarter at recall 1: the smoke run's pile-ups
    precision = [0.0] * (pile + n // 4) + list(rng.random(n - pile - n // 4) * 0.1)
    recall = [0.0] * pile + [1.0] * (n // 4) + list(rng.random(n - pile - n // 4) * 0.1)
    bpd = [None] + list(7.97 + rng.random(n - 1) * 0.01)
    return names, fds, [0.4] * n, precision, recall, bpd


@pytest.mark.parametrize("n", [4, 14, 40])
def test_the_model_summary_stays_readable_with_few_or_many_runs(n):
    names, fds, floors, precision, recall, bpd = _summary(n)
    fig = viz.model_comparison(names, fds, floors, precision, recall, bpd)
    bars, pr, lf, key = fig.axes
    renderer = fig._get_renderer()
    assert [t.get_text() for t in bars.get_yticklabels()] == [str(i) for i in range(1, n + 1)]  # short names
    key_lines = [t.get_text() for t in key.texts][1:]
    assert key_lines == [f"{i:>2}  {name}" for i, name in enumerate(names, 1)]  # the key beside the points
    for ax, xs, ys in ((pr, recall, precision), (lf, bpd[1:], fds[1:])):
        labels = [t for t in ax.texts]
        boxes = [t.get_window_extent(renderer) for t in labels]
        assert not any(
            a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :]
        )  # no label over another
        shown = sorted(
            int(p)
            for t in labels
            for p in t.get_text().replace("-", ",").split(",")
            if "-" not in t.get_text()
        )
        assert set(shown) <= set(range(1, n + 1))
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        assert x0 <= min(xs) and max(xs) <= x1 and y0 <= min(ys) and max(ys) <= y1  # every point inside
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert lf.get_xlim()[1] - lf.get_xlim()[0] < 0.1  # zoomed to the bits/dim, not from 0
    pile = next(t.get_text() for t in pr.texts if t.get_text().startswith("1"))
    assert pile == (f"1-{n // 2}" if n // 2 > 2 else "1,2")  # the models at (0, 0) share one label
    assert bars.get_xlabel() and bars.get_title() and bars.get_xscale() == "log"


def test_label_spans_read_short():
    assert viz_compare._spans([5, 1, 2, 3, 7, 8]) == "1-3, 5, 7,8"


def test_the_printed_config_names_only_what_differs_from_the_preset():
    model_cfg, train_cfg = MODELS["ncsn"].presets["tiny"]
    S = types.SimpleNamespace(
        preset="tiny", train_cfg=train_cfg.__class__(**{**vars(train_cfg), "steps": 40})
    )
    line = setups.preset_changes(S, "ncsn")
    assert line == f"TrainConfig of preset 'tiny': the preset's, except steps 40 (preset {train_cfg.steps:,})"
    assert setups.config_changes(model_cfg, model_cfg, "NCSNConfig") == "NCSNConfig: the preset's, unchanged"
    assert len(setups.preset_changes(S, "ncsn", model_cfg).splitlines()) == 2


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


def test_the_fid_sentence_comes_from_the_values_used():
    from lib.workbook import comparison

    plan = comparison.fid_plan(types.SimpleNamespace(n_fid=0, n_fid_bank=20))
    assert plan.startswith("FID/KID: from its first 20 bank images") and "N_FID_FULL = 0" in plan
    assert "whole sample bank" in comparison.fid_plan(types.SimpleNamespace(n_fid=0, n_fid_bank=None))
    assert "from 5,000 fresh samples" in comparison.fid_plan(
        types.SimpleNamespace(n_fid=5000, n_fid_bank=None)
    )


def test_the_runs_read_by_06_are_one_line_naming_only_the_exceptions():
    from lib.workbook import results

    entry = lambda name, net, source: {"experiment": name, "net": net, "source": source}
    runs = [entry(f"beta_vae-beta{b}", object(), "bank") for b in (1, 2, 4)]
    line = results.gathered_line(runs + [entry("ncsn-tiny", None, "none")])
    assert "\n" not in line
    assert line == (
        "4 run(s) read: checkpoint loaded for 3, none for 1 (ncsn-tiny); 3 with samples from its bank; "
        "1 with no samples (ncsn-tiny)"
    )
    assert (
        results.gathered_line(runs) == "3 run(s) read: checkpoint loaded for 3; 3 with samples from its bank"
    )


def test_short_work_saves_no_progress_bar_only_its_final_line(capsys):
    from lib.common.progress import Progress

    with Progress(16, "classifier features", "img", final_line=False) as bar:
        bar.update(16)
    with Progress(16, "sampling", "img") as bar:
        bar.update(16)
    out, err = capsys.readouterr()
    assert err == ""  # no 0% bar and no blank line where it was cleared
    assert out.startswith("sampling: 16 / 16 img in ") and out.count("\n") == 1
