"""The run -> results contract (lib.workbook.results): records, sample banks, reading them back, the family table."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from lib.common.paths import run_dir
from lib.models import MODELS
from lib.train import train
from lib.train.checkpoints import save_checkpoint
from lib.workbook import results


class _Copy:  # what a results record reads from lib.data.CIFAR10
    source, image_format, lossy = "folder", "jpeg", True


def test_smoke_and_real_results_never_share_a_path(isolated_outputs, monkeypatch):
    common = dict(
        model="m",
        config={},
        data={"source": "folder", "format": "jpeg"},
        device="cpu",
        wall_minutes=1.0,
        steps=3,
        img_per_s=10.0,
        metrics={"bpd": 5.0},
    )
    real = results.write_results("exp", smoke=False, **common)
    monkeypatch.setenv("WORKBOOK_SMOKE", "1")
    smoke = results.write_results("exp", **common)
    assert real == isolated_outputs / "results" / "exp.json"
    assert smoke == isolated_outputs / "smoke" / "results" / "exp.json"
    assert json.loads(real.read_text())["smoke"] is False and json.loads(smoke.read_text())["smoke"] is True


@pytest.mark.parametrize("name", ["../runs/x", "a/b", ".hidden", ""])
def test_an_experiment_name_cannot_write_outside_the_results_folder(name):
    with pytest.raises(ValueError, match="plain file name"):
        results.results_path(name)


def test_key_figure_goes_to_the_runner_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBOOK_KEY_FIGURE_FILE", str(tmp_path / "k.json"))
    results.report_key_figure("test bits/dim", 4.25, "bits/dim")
    assert json.loads((tmp_path / "k.json").read_text()) == {
        "name": "test bits/dim",
        "value": 4.25,
        "unit": "bits/dim",
    }
    assert "4.25" in capsys.readouterr().out


def test_a_recorded_experiment_reads_back_with_its_bank_model_and_bound(images, isolated_outputs):
    """record_experiment -> load_records -> the bank, the checkpoint and the bound, as notebooks 02-05 write them
    and 01 and 06 read them."""
    cfg, train_cfg = MODELS["beta_vae"].presets["tiny"]
    run = isolated_outputs / "smoke" / "runs" / "beta_vae-tiny"
    result = train(
        MODELS["beta_vae"].build(cfg),
        images,
        train_cfg,
        run,
        device="cpu",
        use_wandb=False,
        model_config={"name": "beta_vae", **dataclasses.asdict(cfg)},
    )
    path = results.record_experiment(
        "beta_vae-beta1",
        model_name="beta_vae",
        result=result,
        model_cfg=cfg,
        train_cfg=train_cfg,
        preset="tiny",
        cifar=_Copy(),
        device="cpu",
        metrics={"bpd_k": 4.5, "k_eval": 64, "bpd_elbo": 4.6},
        n_bank=12,
        seed=1,
        smoke=True,
    )
    (path.parent / "notes.json").write_text(
        '{"not": "a record"}'
    )  # another JSON file in the folder is skipped
    records, notes = results.load_records(smoke=True)
    assert [r["experiment"] for r in records] == ["beta_vae-beta1"] and "notes.json" in notes[0]
    record = records[0]
    assert (
        record["run"] == "beta_vae-tiny"
        and record["steps"] == train_cfg.steps
        and record["config"]["preset"] == "tiny"
    )
    assert record["n_params"] == sum(p.numel() for p in result.ema.parameters())
    bank = results.load_sample_bank("beta_vae-beta1", smoke=True)
    torch.manual_seed(1)  # the bank is the EMA model's samples under the seed it records
    expected = results.draw_samples(result.ema.eval(), n=12, seed=1)[0]
    assert bank["seed"] == 1 and np.array_equal(bank["images"], expected)
    assert results.model_from_run(record, smoke=True) is not None
    assert results.tightest_test_bound(record["metrics"]) == (4.5, "L_64")


def test_sample_bank_round_trip(images, isolated_outputs):
    path = results.save_sample_bank("demo", images.float() / 255, seed=3, seconds_per_1k=1.5, smoke=True)
    assert path == isolated_outputs / "smoke/results/demo.samples.npz"
    bank = results.load_sample_bank("demo", smoke=True)
    assert np.array_equal(bank["images"], images.numpy()) and bank["seed"] == 3
    assert results.load_sample_bank("absent", smoke=True) is None


def test_tightest_test_bound_prefers_importance_weighted_over_elbo():
    vae = {
        "bpd_elbo": 4.1,
        "bpd_k": 4.0,
        "k_eval": 5000,
        "log_px_k": -9000.0,
        "elbo": -9100.0,
    }  # notebooks 03/04
    nvae = {"test_bpd_iw": 3.3, "test_bpd_elbo": 3.4, "k": 100, "val_bpd_elbo": {"full": 3.5}}  # notebook 05
    assert results.tightest_test_bound(vae) == (4.0, "L_5000")
    assert results.tightest_test_bound(nvae) == (3.3, "L_100")
    # with their standard errors (far below any bound: 06 and 01 once listed 0.010 bits/dim as the best bound)
    assert results.tightest_test_bound({**vae, "bpd_k_se": 0.010}) == (4.0, "L_5000")
    assert results.tightest_test_bound({**nvae, "test_bpd_iw_se": 0.026}) == (3.3, "L_100")
    assert results.tightest_test_bound({**vae, "bpd_gap": 0.025, "bpd_gap_se": 0.001}) == (4.0, "L_5000")
    assert results.tightest_test_bound({"bpd_elbo": 4.1, "val_bpd_elbo": 3.0}) == (4.1, "ELBO")
    assert results.tightest_test_bound({"final_loss": 1.0, "fd_c10": 2.0}) == (
        None,
        None,
    )  # NCSN: no likelihood


def test_model_from_run_reads_the_run_folder_the_record_names(isolated_outputs):
    """Results of experiment "beta_vae-beta4" describe the checkpoint in run folder "beta_vae-beta4-tiny"."""
    cfg = MODELS["beta_vae"].presets["tiny"][0]
    model = MODELS["beta_vae"].build(cfg)
    record = {"experiment": "beta_vae-beta4", "run": "beta_vae-beta4-tiny", "model": "beta_vae"}
    save_checkpoint(
        run_dir(record["run"], smoke=True),
        dict(
            step=1,
            model=model.state_dict(),
            ema=model.state_dict(),
            optimizer={},
            train_config={},
            model_config=dataclasses.asdict(cfg),
            wall_seconds=0.0,
        ),
    )
    loaded, n_params = results.model_from_run(record, smoke=True)
    assert n_params == sum(p.numel() for p in model.parameters()) and not loaded.training
    torch.testing.assert_close(
        loaded.state_dict(), model.state_dict()
    )  # the weights of that run's checkpoint
    assert (
        results.model_from_run({**record, "run": record["experiment"]}, smoke=True) is None
    )  # no checkpoint there
    assert results.model_from_run({**record, "model": "not-a-family"}, smoke=True) is None


def test_progress_prints_a_final_count_and_time_line(capsys):
    from lib.common.progress import Progress

    with Progress(10, "sampling", "img") as bar:
        bar.update(4)
        bar.update(6)
    out = capsys.readouterr().out
    assert out.startswith("sampling: 10 / 10 img in ") and out.rstrip().endswith("img/s)")


def test_records_of_extra_training_seeds_are_left_out_with_a_note(tmp_path):
    for name, seed in (("a", None), ("a-s1", 1), ("b", 0)):
        record = {"experiment": name, "metrics": {}} | ({} if seed is None else {"training_seed": seed})
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    records, notes = results.load_records(tmp_path)
    assert [r["experiment"] for r in records] == ["a", "b"] and notes == [
        "left out 1 record(s) of extra training seeds (their notebooks state the seeds' spread)"
    ]
    assert len(results.load_records(tmp_path, all_seeds=True)[0]) == 3
