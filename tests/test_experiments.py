"""One experiment from training to its results file (lib.workbook.budget.fit, lib.workbook.results.record_fitted):
a budget becomes the steps that are trained, a finished run is loaded rather than trained again, and the record
carries the profile, the configs the run trained under and its plan."""

from __future__ import annotations

import json
import types
from dataclasses import replace

from lib.common import files
from lib.models import MODELS
from lib.workbook import budget, results, training


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
    run = isolated_outputs / "runs" / "bv"
    fitted = budget.fit("beta_vae", cfg, train_cfg, images, run, "cpu", 0.5, seed=3)
    assert asked == [(0.5, {"seed": 3})] and fitted.plan == plan and fitted.result.step == 6
    assert fitted.train_cfg.steps == 6 and fitted.train_cfg.max_minutes == train_cfg.max_minutes
    again = budget.fit("beta_vae", fitted.model_cfg, fitted.train_cfg, images, run, "cpu", seed=3)
    assert again.result.step == 6 and again.plan is None  # finished: loaded as it is, nothing trained
    assert len(files.read_jsonl(run / "metrics.jsonl")) == len(
        files.read_jsonl(fitted.result.folder / "metrics.jsonl")
    )


def test_record_fitted_writes_the_profile_the_configs_and_the_preset(images, isolated_outputs):
    cfg, train_cfg = tiny_beta_vae()
    run = isolated_outputs / "smoke" / "runs" / "bv-record"
    fitted = budget.fit("beta_vae", cfg, train_cfg, images, run, "cpu")
    S = types.SimpleNamespace(n_bank=8, smoke=True, profile="smoke")
    path = results.record_fitted(fitted, "beta_vae", S, _Copy(), "cpu", {"bpd_k": 5.0}, seed=1, preset="tiny")
    record = json.loads(path.read_text())
    assert path.name == "bv-record.json" and record["profile"] == "smoke" and "budget" not in record
    assert record["config"]["preset"] == "tiny" and record["config"]["train"]["steps"] == 4
    assert record["metrics"]["bpd_k"] == 5.0 and "sample_seconds_per_1k" in record["metrics"]
    assert len(results.load_sample_bank("bv-record", smoke=True)["images"]) == 8
