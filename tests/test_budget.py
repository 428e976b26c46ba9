"""Budgets (lib.workbook.budget): minutes become steps with complete schedules, estimates are close to the real cost."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import torch

from lib.common import files, paths
from lib.models import MODELS
from lib.train import TrainConfig, lr_at, train
from lib.workbook import budget


def test_schedules_keep_their_share_of_a_shorter_run():
    model_cfg, train_cfg = MODELS["nvae"].presets["reference"]  # 140k steps, 3.5k LR warm-up, 42k KL warm-up
    small_model, small_train = budget.fit_schedules(model_cfg, train_cfg, 1400)
    assert small_train.steps == 1400 and small_train.warmup_steps == 35 and small_train.max_minutes == 0
    assert small_model.kl_warmup_steps == 420 and small_model.channels == model_cfg.channels
    capacity_cfg = replace(MODELS["beta_vae"].presets["tiny"][0], capacity_max=20.0, capacity_steps=100)
    fitted, _ = budget.fit_schedules(capacity_cfg, TrainConfig(steps=200), 50)
    assert fitted.capacity_steps == 25  # C reaches C_max at the same share of the run
    with pytest.raises(ValueError, match="steps"):
        budget.fit_schedules(model_cfg, train_cfg, 0)


def test_a_budgeted_run_ends_in_its_budget_with_its_learning_rate_schedule_complete(images, tmp_path):
    """Budgeted to 10 s: probe, then the steps that fit; the run ends within the budget plus the probe and a
    checkpoint (with slack for a shared machine), its cosine schedule at its floor."""
    model_cfg, _ = MODELS["pixels"].presets["tiny"]
    train_cfg = TrainConfig(
        steps=1000,
        batch_size=16,
        lr=1e-2,
        warmup_steps=100,
        schedule="cosine",
        min_lr_ratio=0.1,
        log_every=50,
        ckpt_every=10**6,
        n_samples=0,
    )
    start = time.monotonic()
    model_cfg, train_cfg, plan = budget.plan_training(
        MODELS["pixels"].build(model_cfg),
        model_cfg,
        train_cfg,
        images,
        tmp_path / "run",
        "cpu",
        minutes=10 / 60,
        log=lambda _: None,
    )
    result = train(
        MODELS["pixels"].build(model_cfg), images, train_cfg, tmp_path / "run", device="cpu", use_wandb=False
    )
    elapsed = time.monotonic() - start
    assert result.step == plan.steps == train_cfg.steps and plan.steps > 1
    assert abs(train_cfg.warmup_steps - 100 * plan.steps / 1000) <= 0.5  # the warm-up keeps its 10% share
    expected = (
        (10 - plan.probe_seconds) * plan.probe_img_per_s / train_cfg.batch_size
    )  # the plan's rounded figures
    assert plan.steps == pytest.approx(expected, rel=0.02, abs=2)
    assert elapsed < 3 * (10 + plan.probe_seconds) + 20, (
        f"{elapsed:.1f} s for a 10 s budget"
    )  # slack: shared CPUs
    last = files.read_jsonl(tmp_path / "run" / "metrics.jsonl")[-1]
    assert last["step"] == plan.steps and last["lr"] == pytest.approx(lr_at(plan.steps - 1, train_cfg))
    assert lr_at(plan.steps, train_cfg) == pytest.approx(
        train_cfg.lr * train_cfg.min_lr_ratio
    )  # spans the run
    assert plan.epochs == pytest.approx(plan.steps * train_cfg.batch_size / len(images))


def test_nvae_fitted_to_a_short_run_ends_with_its_kl_warm_up_complete(images, tmp_path):
    model_cfg, train_cfg = MODELS["nvae"].presets["reference"]  # 140k steps, KL warm-up over 42k
    tiny_cfg, tiny_train = MODELS["nvae"].presets["tiny"]
    model_cfg, train_cfg = budget.fit_schedules(
        replace(tiny_cfg, kl_warmup_steps=model_cfg.kl_warmup_steps),
        replace(tiny_train, steps=train_cfg.steps, warmup_steps=3_500),
        6,
    )
    assert (train_cfg.steps, train_cfg.warmup_steps, model_cfg.kl_warmup_steps) == (6, 1, 2)
    train_cfg = replace(train_cfg, batch_size=4, log_every=1, n_samples=0)
    torch.manual_seed(0)
    train(
        MODELS["nvae"].build(model_cfg), images, train_cfg, tmp_path / "nvae", device="cpu", use_wandb=False
    )
    last = files.read_jsonl(tmp_path / "nvae" / "metrics.jsonl")[-1]
    assert last["kl_coeff"] == 1.0 and last["lr"] == pytest.approx(lr_at(5, train_cfg))
    assert lr_at(6, train_cfg) == pytest.approx(
        train_cfg.lr * train_cfg.min_lr_ratio
    )  # the cosine spans the run


def test_a_run_with_checkpoints_keeps_its_stored_plan(images, tmp_path, monkeypatch):
    model_cfg, train_cfg = MODELS["pixels"].presets["tiny"]
    model = MODELS["pixels"].build(model_cfg)
    _, first_cfg, first = budget.plan_training(
        model, model_cfg, train_cfg, images, tmp_path / "run", "cpu", minutes=0.05, log=lambda _: None
    )
    train(model, images, replace(first_cfg, steps=2), tmp_path / "run", device="cpu", use_wandb=False)
    monkeypatch.setattr(budget, "probe_img_per_s", lambda *a, **k: pytest.fail("probed again"))
    _, again_cfg, again = budget.plan_training(
        model, model_cfg, train_cfg, images, tmp_path / "run", "cpu", minutes=0.05, log=lambda _: None
    )
    assert again == first and again_cfg.steps == first_cfg.steps


def test_a_sampling_estimate_is_within_a_factor_of_two_of_its_cost():
    cfg = MODELS["ncsn"].presets["tiny"][0]
    model = MODELS["ncsn"].build(cfg).eval()
    draw = lambda: model.sample(8)  # noqa: E731
    ratios = []
    for _ in range(
        3
    ):  # a load spike on a shared machine can hit either side once: one clean attempt must agree
        estimate = budget.estimate_seconds(draw, n_calls=4)
        start = time.perf_counter()
        for _ in range(4):
            draw()
        ratios.append(estimate / (time.perf_counter() - start))
        if 0.5 < ratios[-1] < 2:
            break
    assert 0.5 < ratios[-1] < 2, f"estimate / actual over attempts: {ratios}"


def test_the_stopwatch_says_where_the_time_went(capsys):
    watch = budget.Stopwatch()
    with watch("sampling", estimate=0.01):
        time.sleep(0.02)
    with watch("evaluation"):
        pass
    assert "sampling: estimated 0.0 s" in capsys.readouterr().out
    summary = watch.summary()
    assert "sampling" in summary and "(estimated 0.0 s)" in summary and "evaluation" in summary
    assert watch.parts["sampling"][0] >= 0.02


def test_the_stopwatch_adds_up_repeated_parts_in_columns_sized_to_the_names():
    watch = budget.Stopwatch()
    long_name = "evaluation (L_5000 on 1000 images) x4"  # 37 characters
    for estimate in (60.0, 30.0, None):
        with watch(long_name, estimate=estimate):
            pass
    with watch("training", estimate=1.5):
        pass
    lines = watch.summary().splitlines()[1:]
    assert "(estimated 1.5 min for 2 of 3 runs)" in lines[0]  # 60 + 30 s, not the last estimate alone
    assert lines[1].endswith("(estimated 1.5 s)")
    assert lines[0].index(" s ") == lines[1].index(
        " s "
    )  # the seconds column lines up under a 37-character name


def test_the_profile_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("WORKBOOK_PROFILE", raising=False)
    monkeypatch.setenv("WORKBOOK_SMOKE", "1")
    assert paths.profile() == "smoke"
    monkeypatch.setenv("WORKBOOK_PROFILE", "short")
    assert paths.profile() == "short"
    monkeypatch.setenv("WORKBOOK_PROFILE", "long")
    with pytest.raises(ValueError, match="smoke.*short.*full"):
        paths.profile()
