"""One experiment from training to its results file (lib.workbook.experiments): a budget becomes the steps that are
trained, a finished run is loaded rather than trained again, the record carries the profile and the plan, and the
notebooks' run names and table rows come out as the notebooks used to build them inline."""

from __future__ import annotations

import json
import types
from dataclasses import replace

from lib.common import files
from lib.models import MODELS
from lib.train.config import TrainConfig
from lib.train.loop import TrainResult
from lib.workbook import budget, experiments, profiles, training


class _Copy:  # what record_experiment reads of a data copy
    source, image_format, lossy = "test", "png", False

    def describe(self):
        return "a test copy"


def tiny_beta_vae():
    cfg, train_cfg = MODELS["beta_vae"].presets["tiny"]
    return cfg, replace(train_cfg, steps=4, log_every=2, ckpt_every=4, n_samples=0)


def test_fit_trains_the_steps_a_budget_plans_and_loads_a_finished_run(images, isolated_outputs, monkeypatch):
    cfg, train_cfg = tiny_beta_vae()
    plan = budget.TrainingPlan(minutes=0.5, probe_img_per_s=10.0, steps=6, epochs=1.5, probe_seconds=0.1)
    asked = []

    def within(
        minutes, name, model_cfg, tcfg, x, run, device, **args
    ):  # the budget's run, at the plan's steps
        asked.append((minutes, args))
        model_cfg, tcfg = budget.fit_schedules(model_cfg, tcfg, plan.steps)
        return training.train_or_load(name, model_cfg, tcfg, x, run, device, **args), plan

    monkeypatch.setattr(budget, "train_within", within)
    watch, run = budget.Stopwatch(), isolated_outputs / "runs" / "bv"
    fitted = experiments.fit(
        "beta_vae", cfg, train_cfg, images, run, "cpu", 0.5, watch, "training (bv)", seed=3
    )
    assert asked == [(0.5, {"seed": 3})] and fitted.plan == plan and fitted.result.step == 6
    assert fitted.train_cfg.steps == 6 and fitted.train_cfg.max_minutes == train_cfg.max_minutes
    assert "training (bv)" in watch.parts
    again = experiments.fit(
        "beta_vae", fitted.model_cfg, fitted.train_cfg, images, run, "cpu", seed=3
    )  # finished: loaded as it is
    assert again.result.step == 6 and again.plan is None
    assert len(files.read_jsonl(run / "metrics.jsonl")) == len(
        files.read_jsonl(fitted.result.folder / "metrics.jsonl")
    )


def test_record_writes_the_profile_the_plan_and_the_preset(images, isolated_outputs):
    cfg, train_cfg = tiny_beta_vae()
    run = isolated_outputs / "smoke" / "runs" / "bv-record"
    fitted = experiments.fit("beta_vae", cfg, train_cfg, images, run, "cpu")
    fitted.plan = budget.TrainingPlan(1.0, 5.0, 4, 0.5, 0.2)
    S = types.SimpleNamespace(preset="tiny", n_bank=8, smoke=True, profile="smoke")
    path = experiments.record(fitted, "beta_vae", S, _Copy(), "cpu", {"bpd_k": 5.0}, seed=1)
    record = json.loads(path.read_text())
    assert path.name == "bv-record.json" and record["profile"] == "smoke" and record["budget"]["steps"] == 4
    assert record["config"]["preset"] == "tiny" and record["config"]["train"]["steps"] == 4
    assert record["metrics"]["bpd_k"] == 5.0 and "sample_seconds_per_1k" in record["metrics"]


def fake_fitted(folder, step=10, batch_size=4, bound=-100.0):
    folder.mkdir(parents=True, exist_ok=True)
    records = [{"step": 1, "bound": -500.0}, {"step": step, "bound": bound}]  # the last record counts
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = TrainResult(None, None, step, 120.0, 1.0, 0, folder)
    return experiments.Fitted(result, None, TrainConfig(batch_size=batch_size), evaluation={"bpd_k": 5.0})


def test_iwae_rows_read_the_last_training_bound_and_count_epochs(tmp_path):
    runs = {("iwae", 5): fake_fitted(tmp_path / "a", step=10, batch_size=4, bound=-90.0)}
    (row,) = experiments.iwae_rows(runs, n_train=20)
    assert row == {"model": "IWAE k=5", "k": 5, "steps": 10, "epochs": 2.0, "minutes": 2.0, "train_bound": -90.0,
                   "bpd_k": 5.0}  # fmt: skip


def test_the_notebooks_run_names_and_dreg_only_for_iwae(monkeypatch, isolated_outputs):
    """The names notebooks 03 and 04 gave their run folders inline: <prefix>-<tag><suffix> and
    <prefix>-<objective>-k<k><view><suffix>, where the suffix is -short in the short profile only."""
    seen = []

    def fit(name, model_cfg, train_cfg, x, run, device, minutes, watch, **args):
        seen.append((run.name, model_cfg, minutes))
        result = TrainResult(types.SimpleNamespace(eval=lambda: None), types.SimpleNamespace(eval=lambda: None),
                             3, 1.0, 1.0, 0, run)  # fmt: skip
        return experiments.Fitted(result, model_cfg, train_cfg)

    monkeypatch.setattr(experiments, "fit", fit)
    monkeypatch.setattr(experiments, "evaluate_vae", lambda session, model, **kw: {"kw": sorted(kw)})
    params = {"PROFILE": "short", "SMOKE": None, "BETAS": [4.0], "CAPACITY_MAX": 0.0, "LIKELIHOOD": "logistic",
              "SEED": 0, "MAX_MINUTES": None, "STEPS": None, "BATCH_SIZE": None, "LR": None, "LATENT_DIM": None,
              "K_EVAL": None, "N_LIKELIHOOD": None}  # fmt: skip
    S = profiles.settings("beta_vae", params, quiet=True)
    session = experiments.Session(S, _Copy(), None, None, "cpu", budget.Stopwatch())
    fitted = experiments.beta_vae_run(session, 4.0, "beta_vae")
    assert seen[-1][0] == "beta_vae-beta4-short" and seen[-1][1].beta == 4.0 and seen[-1][2] == 1.0
    assert fitted.evaluation == {"kw": ["model_cfg", "step"]}  # the trained objective's step is evaluated
    params = {"PROFILE": "full", "SMOKE": None, "IWAE_KS": [5], "VAE_KS": [5], "DREG": True, "SEED": 0,
              "EPOCHS": None, "MAX_MINUTES": None, "EQUAL_WALL_MINUTES": None, "BATCH_SIZE": None, "LR": None,
              "LATENT_DIM": None, "K_EVAL": None, "N_LIKELIHOOD": None}  # fmt: skip
    session.S = profiles.settings("iwae", params, quiet=True)
    experiments.iwae_run(session, "iwae", 5, "iwae", session.S.train_cfg, "-wall", 0.5)
    experiments.iwae_run(session, "vae", 5, "iwae", session.S.train_cfg)
    (iwae_name, iwae_cfg, minutes), (vae_name, vae_cfg, _) = seen[-2:]
    assert (iwae_name, vae_name, minutes) == ("iwae-iwae-k5-wall", "iwae-vae-k5", 0.5)
    assert iwae_cfg.dreg and not vae_cfg.dreg and iwae_cfg.k == vae_cfg.k == 5


def _iwae_row(objective: str, k: int, bpd: float, steps: int = 16) -> dict:
    return dict(
        model=f"{objective} k={k}",
        k=k,
        bpd_k=bpd,
        n_active=k % 7,
        train_bound=-100.0 + k,
        steps=steps,
        minutes=0.1 * k,
        latent_dim=8,
    )


def test_iwae_figures_put_the_vae_on_the_iwae_axes_and_both_views_side_by_side():
    S = types.SimpleNamespace(k=64, epochs=1.0, wall_minutes=0.05)
    rows = [_iwae_row("VAE", 1, 8.1), *(_iwae_row("IWAE", k, 8.0 - 0.01 * k) for k in (1, 5, 50))]
    fig = experiments.iwae_k_figure(rows, S, "JPEG copy", "equal epochs: 1 epoch")
    assert len(fig.axes) == 3 and "equal epochs: 1 epoch" in fig._suptitle.get_text()
    bpd = fig.axes[0]
    assert bpd.get_ylabel() == "test bits/dim (L_64, JPEG copy)" and bpd.get_xlabel().startswith("training k")
    iwae, vae = bpd.lines
    assert list(iwae.get_xdata()) == [1, 5, 50] and list(vae.get_xdata()) == [1]  # the VAE at its k
    assert list(vae.get_ydata()) == [8.1] and vae.get_linestyle() == "None"
    assert fig.axes[1].get_ylabel() == "active units of 8"
    wall = [_iwae_row("VAE", 1, 8.2, 3), *(_iwae_row("IWAE", k, 8.1, 4 - k // 25) for k in (1, 5, 50))]
    fig = experiments.iwae_wall_figure(rows, wall, S, "JPEG copy")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [
        "IWAE, equal epochs (1 epoch)",
        "IWAE, equal wall time (0.05 min)",
        "VAE, equal epochs (1 epoch)",
        "VAE, equal wall time (0.05 min)",
    ]
    steps = fig.axes[1]
    assert steps.get_ylabel() == "optimizer steps per model" and len(steps.lines) == 4
    assert (
        list(steps.lines[1].get_ydata()) == [4, 4, 2]
        and fig.axes[2].get_ylabel() == "training wall time [min]"
    )
