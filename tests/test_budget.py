"""Budgets (lib.workbook.budget): minutes become steps with complete schedules, a run ends on time, resumes
exactly, and reports planned vs actual; estimates are close to the real cost."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lib.common import files, paths
from lib.models import MODELS
from lib.train import TrainConfig, checkpoints, lr_at, train
from lib.workbook import budget, results, training


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


# --- the arithmetic of the plan, without timing -----------------------------------------------------------------


def test_the_probe_window_is_a_share_of_the_budget_within_bounds():
    assert (
        budget.probe_window(10.0) == pytest.approx(24.0)
        and budget.probe_window(100.0) == budget.PROBE_MAX_SECONDS
    )
    assert budget.probe_window(0.1) == pytest.approx(0.6)  # never more than a tenth of the budget
    assert budget.steps_that_fit(600, 0.4, 4) == 60 and budget.steps_that_fit(-5, 100, 4) == 1


@pytest.mark.parametrize("minutes", [0, -1.0, float("nan"), float("inf"), "5", True])
def test_a_budget_must_be_a_finite_number_of_minutes(minutes):
    with pytest.raises(ValueError, match="minutes must be a finite number > 0"):
        budget.check_minutes(minutes)


# --- a budgeted run with its pace replaced: the plan, complete schedules, exact resume ------------------------

MINUTES, BATCH = 10.0, 4  # a small batch: the fake-paced runs check steps and weights, not speed
PROBE_PACE = 40 * BATCH / 600 * 1.0001  # the probe's pace: 40 steps in the 600 s the fake clock leaves


@pytest.fixture
def fake_pace(monkeypatch):
    """A clock that never moves and a fixed pace: the probe plans 40 steps."""
    monkeypatch.setattr(budget, "now", lambda: 0.0)
    monkeypatch.setattr(budget, "probe_img_per_s", lambda *a, **k: (PROBE_PACE, 10))


def _capacity_vae():
    model_cfg = replace(MODELS["beta_vae"].presets["tiny"][0], capacity_max=5.0, capacity_steps=50)
    train_cfg = TrainConfig(
        steps=100, batch_size=BATCH, lr=1e-3, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1,
        log_every=10, ckpt_every=10**6, n_samples=4,
    )  # fmt: skip
    return model_cfg, train_cfg


def _train_within(images, folder, log=None, **kwargs):
    model_cfg, train_cfg = _capacity_vae()
    return budget.train_within(
        MINUTES, "beta_vae", model_cfg, train_cfg, images, folder, "cpu", data="test data", use_wandb=False,
        log=(log.append if log is not None else lambda _: None), **kwargs,
    )  # fmt: skip


def test_a_budgeted_run_trains_the_planned_steps_with_every_schedule_complete(images, tmp_path, fake_pace):
    lines = []
    result, plan = _train_within(images, tmp_path / "run", log=lines)
    assert (plan.steps, result.step, plan.probe_steps) == (40, 40, 10)
    model_cfg, train_cfg = _capacity_vae()
    fitted_model, fitted_train = budget.fit_schedules(model_cfg, train_cfg, 40)
    assert (fitted_train.warmup_steps, fitted_model.capacity_steps) == (4, 20)  # their shares of the run
    for r in files.read_jsonl(tmp_path / "run" / "metrics.jsonl"):
        assert r["lr"] == pytest.approx(lr_at(r["step"] - 1, fitted_train))
    assert lr_at(40, fitted_train) == pytest.approx(train_cfg.lr * train_cfg.min_lr_ratio)  # at its floor
    state = checkpoints.load_checkpoint(checkpoints.checkpoint_path(tmp_path / "run", 40))
    assert state["model_config"] == training.run_record("beta_vae", fitted_model, images, "test data")
    stored = budget.read_plan(tmp_path / "run")
    assert (
        stored == plan
        and plan.actual["steps"] == 40
        and plan.actual["img_per_s"] == round(result.img_per_s, 1)
    )
    assert lines[0].startswith("training plan: 10 min at 0.3 img/s (probe) -> 40 steps")
    assert lines[-1].startswith("training budget 10 min: planned 40 steps at 0.3 img/s (the probe's pace)")
    fitted = budget.fit("beta_vae", model_cfg, train_cfg, images, tmp_path / "run", "cpu", MINUTES,
                        data="test data", use_wandb=False)  # fmt: skip
    assert fitted.result.step == 40 and fitted.train_cfg.steps == 40 and fitted.model_cfg == fitted_model
    cifar = SimpleNamespace(source="test", image_format="png", lossy=False)
    path = results.record_experiment("budgeted", model_name="beta_vae", result=result, cifar=cifar, device="cpu",
                                     metrics={}, model_cfg=fitted_model, train_cfg=fitted_train, n_bank=4)  # fmt: skip
    assert json.loads(path.read_text())["budget"]["actual"]["steps"] == 40  # planned vs actual in the record


def _weights(result) -> dict:
    return {k: v.clone() for k, v in result.model.state_dict().items()}


def test_a_budgeted_run_stopped_midway_resumes_to_the_same_weights_without_probing_again(
    images, tmp_path, fake_pace, monkeypatch
):
    whole, _ = _train_within(images, tmp_path / "whole")
    first, plan = _train_within(images, tmp_path / "stopped", stop_at=15)
    assert first.step == 15 and plan.actual is None
    monkeypatch.setattr(budget, "probe_img_per_s", lambda *a, **k: pytest.fail("probed again"))
    resumed, again = _train_within(images, tmp_path / "stopped")
    assert resumed.step == again.steps == 40 and again.minutes == plan.minutes
    for key, value in _weights(whole).items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_a_budgeted_run_ends_on_time_with_its_schedule_complete(images, tmp_path):
    """The one wall-time test: a 15 s budget of the pixel model (thousands of short steps), with the real probe
    and pace, ends within 40% of it (slack for a shared machine: one of two attempts must agree), its cosine at
    its floor."""
    model_cfg, train_cfg = MODELS["pixels"].presets["tiny"]
    train_cfg = replace(train_cfg, steps=1000, warmup_steps=100, schedule="cosine", min_lr_ratio=0.1,
                        log_every=50, ckpt_every=10**6, n_samples=16)  # fmt: skip
    ratios, threads = [], torch.get_num_threads()
    for attempt in range(2):
        start, folder = time.monotonic(), tmp_path / f"run{attempt}"
        torch.set_num_threads(
            1
        )  # on a shared machine one thread's pace varies less than a barrier across two
        try:
            result, plan = budget.train_within(
                0.25, "pixels", model_cfg, train_cfg, images, folder, "cpu", use_wandb=False, log=print
            )
        finally:
            torch.set_num_threads(threads)
        ratios.append((time.monotonic() - start) / 15)
        final = budget.fit_schedules(model_cfg, train_cfg, plan.steps)[1]
        last = files.read_jsonl(folder / "metrics.jsonl")[-1]
        assert result.step == plan.steps == last["step"] and last["lr"] == pytest.approx(
            lr_at(plan.steps - 1, final)
        )
        assert lr_at(plan.steps, final) == pytest.approx(final.lr * final.min_lr_ratio)
        if 0.6 < ratios[-1] < 1.4:
            break
    assert 0.6 < ratios[-1] < 1.4, f"wall time / budget over attempts: {ratios}"


# --- the probe ----------------------------------------------------------------------------------------------------


class Sleepy(nn.Module):
    """A model whose steps take a known time: `first` seconds for the two warm-up steps, `then` after them."""

    def __init__(self, first: float, then: float):
        super().__init__()
        self.w, self.first, self.then = nn.Parameter(torch.zeros(1)), first, then

    def loss(self, x, step):
        time.sleep(self.first if step < budget.PROBE_WARMUP else self.then)
        return (self.w - 1).pow(2).sum(), {}

    def sample(self, n):
        return torch.zeros(n, 3, 32, 32)


def test_the_probe_times_the_steps_after_its_warm_up_over_a_window(images, monkeypatch):
    cfg = TrainConfig(steps=10, batch_size=8)
    monkeypatch.setattr(budget, "PROBE_MAX_STEPS", 5)
    img_per_s, steps = budget.probe_img_per_s(Sleepy(first=0.5, then=0.0), images, cfg, "cpu", seconds=60)
    assert steps == 4 and img_per_s > 8 / 0.5  # 5 timed steps, the first left out; no warm-up step in them
    monkeypatch.setattr(budget, "PROBE_MAX_STEPS", 10**4)
    img_per_s, steps = budget.probe_img_per_s(Sleepy(first=0.0, then=0.02), images, cfg, "cpu", seconds=0.3)
    assert 3 <= steps <= 16  # it stopped by time: 0.3 s holds at most 15 steps of 0.02 s
    assert 0 < img_per_s <= 8 / 0.02  # no faster than the sleep allows


def test_the_outcome_is_recorded_once(images, tmp_path, fake_pace):
    result, plan = _train_within(images, tmp_path / "run")
    lines = []
    assert budget.record_outcome(tmp_path / "run", result, log=lines.append) == plan and not lines  # stored
    assert budget.record_outcome(tmp_path / "nothing", result) is None  # a run without a budget


# --- estimates of the other parts ---------------------------------------------------------------------------------


def test_an_estimate_times_its_evaluation_without_autograd():
    net = torch.nn.Linear(4, 4)
    graphs = []
    budget.estimate_seconds(lambda: graphs.append(net(torch.ones(2, 4)).requires_grad), n_calls=10)
    # the warm-up and both timed calls; a graph would hold its activations
    assert graphs == [False, False, False]
    assert torch.is_grad_enabled()  # and autograd is back on afterwards


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
