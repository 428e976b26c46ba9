"""Budgets a user can trust: minutes become steps, every cost is estimated before it is spent, and a notebook
says at the end where its time went.

- `train_within(minutes, name, ...)` trains a run within a budget of wall-clock minutes, with every schedule
  (LR warm-up and cosine, NVAE's KL warm-up, the capacity annealing: `fit_schedules`) complete at its end:
  1. a probe of the real loop (`lib.train.train`) on a copy of the model, in a temporary folder: PROBE_WARMUP
     untimed steps (compilation, autotuning, allocator), then timed steps for a window of PROBE_SHARE of the budget
     (PROBE_MIN_SECONDS to PROBE_MAX_SECONDS) or PROBE_MAX_STEPS, whichever ends first. Its pace gives the first
     plan: the steps that fit the minutes left, every schedule laid over them.
  2. the first phase: the run itself trains under the first plan for FIRST_SHARE of the budget (at most
     FIRST_MAX_SHARE of the planned steps, in case the probe underrated the pace), writing at least FIRST_RECORDS
     metrics records, so its pace is measured over those windows without the first one (start-up, warm-up) and
     load spikes (pooled with the probe's steps when fewer than FIRST_MIN_WINDOWS are left).
  3. the re-plan, once: the run's pace and the fixed cost of a training session (start-up, warm-up, the closing
     checkpoint and sample grid: the first phase's time beyond its steps at that pace) turn the minutes left into
     the steps that fit; every schedule is laid over them again (the first plan is kept when they differ by at most
     KEEP_WITHIN) and the run continues to the new end. The checkpoint at the re-plan step is relabelled with the
     new plan's configs (its TrainConfig and the schedule fields of its model config, which the run folder's guard
     compares), so the rest resumes it like any checkpoint.
  The steps before the re-plan follow the first plan's schedules, the steps after it the new plan's from where
  that plan is at the re-plan step: a warm-up still under way continues over the new length (its learning rate
  moves by the ratio of the two lengths) and a cosine continues from its new position, then ends at its floor.
  Resume: `budget.json` in the run folder holds the plan. A run stopped after its re-plan resumes exactly (the
  steps, schedules and data order of an uninterrupted run with that plan). A run stopped in its first phase
  continues that phase exactly under the stored first plan, for up to another first-phase time, and then
  re-plans from the pace it measured: the re-plan step and the final steps, which depend on the machine's pace in
  any run, are decided then.
  Planned vs actual (steps, minutes, img/s) is stored in `budget.json`, printed in one line, and copied into the
  results record (lib.workbook.results).
- `plan_training` is the probe and the first plan alone, for a caller that trains the run itself: it cannot
  re-plan, since that needs the run. Both reuse the stored plan when the folder holds checkpoints, so a second
  execution neither probes again nor changes the schedule under a checkpoint.
- `estimate_seconds` times a few calls of a costly function and extrapolates; `Stopwatch` collects the time of
  each part of a notebook, beside its estimate.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..common import files, paths
from ..models import build
from ..train import checkpoints as ckpt
from ..train import run_folder
from ..train.config import TrainConfig
from ..train.loop import TrainResult, train
from . import plans
from .plans import (  # noqa: F401  (the plan's names, where the notebooks have always found them)
    MODEL_SCHEDULE_FIELDS,
    PLAN_FILE,
    TRAIN_SCHEDULE_FIELDS,
    TrainingPlan,
    check_minutes,
    fit_schedules,
    read_plan,
    store_plan,
)
from .training import run_record


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def plan_training(
    model: torch.nn.Module,
    model_cfg,
    train_cfg: TrainConfig,
    x,
    run: str | Path,
    device,
    minutes: float,
    log: Callable = print,
) -> tuple[object, TrainConfig, TrainingPlan]:
    """(model_cfg, train_cfg, plan) for training `model` on images x within `minutes`: probe the loop, turn the
    minutes left after the probe into steps, fit the schedules to them. The caller trains the run, so nothing
    re-plans it: `train_within` does. A run folder that already holds checkpoints reuses its stored plan (no
    probe), so resuming or loading keeps the schedule it was trained on."""
    check_minutes(minutes)
    folder = _folder(run)
    plan = read_plan(folder)
    if plan is not None:
        log(f"training plan (stored with the run): {plan.describe()}")
    else:
        plan = plans.probe_plan(model, train_cfg, x, device, minutes, plans.PLAN_PROBE_SHARE)
        store_plan(folder, plan)
        log(f"training plan: {plan.describe()}; the probe took {plan.probe_seconds:.0f} s")
    return (*fit_schedules(model_cfg, train_cfg, plan.steps), plan)


# --- a budgeted run -------------------------------------------------------------------------------------------


def fitted_configs(model_cfg, train_cfg: TrainConfig, steps: int):
    """(model_cfg, train_cfg) with every schedule laid over `steps` (fit_schedules), keeping the caller's
    max_minutes (the hard stop of a session): the configs a budgeted run trains under."""
    model_cfg, fitted = fit_schedules(model_cfg, train_cfg, steps)
    return model_cfg, replace(fitted, max_minutes=train_cfg.max_minutes)


@dataclass(frozen=True)
class _Run:
    """One budgeted run: what each of its training sessions needs, built as lib.workbook.training builds a run."""

    name: str
    model_cfg: object
    train_cfg: TrainConfig
    x: object
    folder: Path
    device: object
    data: str
    seed: int
    init_from: object
    use_wandb: bool
    extra: dict

    def fitted(self, steps: int):
        return fitted_configs(self.model_cfg, self.train_cfg, steps)

    def record(self, model_cfg) -> dict:
        return run_record(self.name, model_cfg, self.x, self.data, **self.extra)

    def session(self, plan, model_cfg, train_cfg, stop_at) -> tuple[TrainResult, TrainingPlan, float, int]:
        """Train (resume) the run under these configs; (result, plan with the session's time added to its spent
        seconds and stored, the session's seconds, the step it started from). The time is stored even when the
        session is interrupted, and only when it trained a step (a loaded run costs the budget nothing)."""
        step0 = _newest_step(self.folder)
        start, model = plans.now(), build(self.name, model_cfg, self.seed)
        try:
            result = train(
                model,
                self.x,
                train_cfg,
                self.folder,
                device=self.device,
                stop_at=stop_at,
                init_from=self.init_from,
                model_config=self.record(model_cfg),
                use_wandb=self.use_wandb,
            )
        finally:
            seconds = plans.now() - start
            if _newest_step(self.folder) > step0:
                plan = replace(plan, spent_seconds=round(plan.spent_seconds + seconds, 2))
                store_plan(self.folder, plan)
        return result, plan, seconds, step0

    def relabel(self, plan: TrainingPlan) -> None:
        """Give the checkpoint at the re-plan step the final plan's configs, unless it has them already."""
        path = ckpt.checkpoint_path(self.folder, plan.replan_step)
        if not path.is_file() or _newest_step(self.folder) != plan.replan_step:
            return  # the run went on from it under the final plan
        model_cfg, train_cfg = self.fitted(plan.steps)
        with run_folder.RunLock(self.folder):
            state = ckpt.load_checkpoint(path)
            if state["train_config"] != asdict(train_cfg):
                state.update(train_config=asdict(train_cfg), model_config=self.record(model_cfg))
                ckpt.save_checkpoint(self.folder, state, keep=train_cfg.keep_ckpts)


def _newest_step(folder: Path) -> int:
    found = ckpt.list_checkpoints(folder)
    return int(ckpt.PATTERN.match(found[-1].name).group(1)) if found else 0


def _folder(run: str | Path) -> Path:
    return Path(run) if isinstance(run, os.PathLike) else paths.run_dir(str(run))


def _run_first_phase(job: _Run, plan: TrainingPlan, stop_at, log) -> tuple[TrainResult, TrainingPlan]:
    """Train the first phase, then re-plan from its pace (unless the caller's stop_at ended it before)."""
    model_cfg, train_cfg = job.fitted(plan.first_steps)
    phase_cfg = replace(train_cfg, log_every=plan.first_log_every, max_minutes=plan.first_minutes)
    end = plan.first_stop if stop_at is None else min(stop_at, plan.first_stop)
    result, plan, seconds, step0 = job.session(plan, model_cfg, phase_cfg, end)
    if end < plan.first_stop and result.step == end:
        return result, plan  # stopped where the caller asked: the re-plan waits for the phase's end
    batch, records = job.train_cfg.batch_size, files.read_jsonl(job.folder / "metrics.jsonl")
    pace = plans.first_phase_pace(plan, records, step0, batch)
    if not math.isfinite(pace):  # no record in this session (it resumed at the phase's end): all of them
        pace, seconds, step0 = plans.first_phase_pace(plan, records, 0, batch), 0.0, result.step
    session = max(0.0, seconds - (result.step - step0) * batch / pace)
    steps = plans.replanned_steps(plan, result.step, session, pace, batch)
    plan = replace(
        plan,
        replan_step=result.step,
        run_img_per_s=round(pace, 1),
        session_seconds=round(session, 1),
        steps=steps,
        epochs=steps * batch / len(job.x),
    )
    store_plan(job.folder, plan)  # before the relabel: a run killed in between relabels when it resumes
    job.relabel(plan)
    if steps == result.step < plan.first_steps:
        warnings.warn(
            f"the budget of {plan.minutes:g} min was spent by step {steps:,} of the {plan.first_steps:,} the "
            f"probe planned (the run's pace {pace:,.0f} img/s, the probe's {plan.probe_img_per_s:,.0f}): the run "
            "ends there with its schedules cut short; give it more minutes",
            stacklevel=3,
        )
    log(f"re-plan at step {result.step:,}: {plan.describe()}")
    return result, plan


def _start_plan(job: _Run, minutes: float, log) -> TrainingPlan:
    """The stored plan of the run, or a new one from a probe with its first phase (stored)."""
    plan = read_plan(job.folder)
    if plan is not None:
        log(f"training plan (stored with the run): {plan.describe()}")
        if plan.minutes != minutes:
            log(f"  its budget is {plan.minutes:g} min, not {minutes:g}: use another run, or resume=False")
        return plan
    model = build(job.name, job.model_cfg, job.seed)
    probed = plans.probe_plan(model, job.train_cfg, job.x, job.device, minutes, plans.PROBE_SHARE)
    plan = plans.first_phase(probed, job.train_cfg)
    plan = replace(plan, spent_seconds=plan.probe_seconds)
    store_plan(job.folder, plan)
    log(
        f"training plan: {plan.describe()} (probe {plan.probe_seconds:.0f} s); re-plan after "
        f"{60 * plan.first_minutes:.0f} s of training or at step {plan.first_stop:,}"
    )
    return plan


def train_within(
    minutes: float,
    name: str,
    model_cfg,
    train_cfg: TrainConfig,
    x,
    run: str | Path,
    device,
    *,
    data: str = "",
    seed: int = 0,
    init_from=None,
    resume: bool = True,
    use_wandb: bool = True,
    stop_at: int | None = None,
    log: Callable = print,
    **extra,
) -> tuple[TrainResult, TrainingPlan]:
    """Train MODELS[name] from model_cfg (weights seeded by `seed`) on uint8 images x within `minutes` of wall
    time: probe, first phase, one re-plan, the rest (module docstring); returns (result, plan). The run stores
    lib.workbook.training's model config (`run_record`: data, extra such as the preset), so train_or_load and
    load_run_model read it back. init_from starts from another run's weights (staged training); resume=False
    starts afresh, moving an earlier run aside; stop_at ends this session at that step, as in lib.train.train;
    a rerun resumes, and a finished run is loaded. train_cfg.max_minutes stays a hard stop of each session
    after the re-plan (the run stops with a checkpoint; a rerun continues it)."""
    check_minutes(minutes)
    folder = _folder(run)
    if not resume:
        with run_folder.RunLock(folder):
            run_folder.move_aside(folder)
    job = _Run(name, model_cfg, train_cfg, x, folder, device, data, seed, init_from, use_wandb, extra)
    plan = _start_plan(job, minutes, log)
    if plan.replans:
        result, plan = _run_first_phase(job, plan, stop_at, log)
        if plan.replans:
            return result, plan
    if plan.replan_step is not None:
        job.relabel(plan)
    result, plan, _, _ = job.session(plan, *job.fitted(plan.steps), stop_at)
    if result.step >= plan.steps:
        plan = record_outcome(folder, result) or plan
        log(plan.outcome())
    return result, plan


def record_outcome(
    folder: str | Path, result: TrainResult, log: Callable | None = None
) -> TrainingPlan | None:
    """The stored plan of run `folder` with its outcome (`actual`: steps, minutes, img/s) from `result`, stored
    and logged in one line when new; None for a run without a budget. Minutes are the budget's clock (probe and
    training sessions) for train_within, else the probe plus the loop's training time (lib.train's
    wall_seconds), which leaves out what the caller did between them."""
    plan = read_plan(folder)
    if plan is None:
        return None
    if plan.actual is None or plan.actual["steps"] != result.step:
        seconds = plan.spent_seconds if plan.first_stop else plan.probe_seconds + result.wall_seconds
        actual = {
            "steps": result.step,
            "minutes": round(seconds / 60, 3),
            "img_per_s": round(result.img_per_s, 1),
        }
        plan = replace(plan, actual=actual)
        store_plan(Path(folder), plan)
        if log is not None:
            log(plan.outcome())
    return plan


# --- costs of the other parts of a notebook -------------------------------------------------------------------


def estimate_seconds(fn: Callable[[], object], n_calls: int, device="cpu", n_timed: int = 2) -> float:
    """Seconds that `n_calls` calls of `fn` will take, from one untimed warm-up call and `n_timed` timed ones.
    `fn` is an evaluation (a bound's decoder call, a score, a sampler's draw), so it runs without autograd, as the
    evaluation it stands for does: with a graph, one call of NVAE's log_weights on 50 images x 10 copies held more
    than 20 GB and a 24 GB machine killed notebook 05's kernel."""
    if n_calls <= 0:
        return 0.0
    with torch.no_grad():
        fn()
        _sync(device)
        start = time.perf_counter()
        for _ in range(n_timed):
            fn()
        _sync(device)
    return (time.perf_counter() - start) / n_timed * n_calls


class Stopwatch:
    """Wall time per named part of a notebook (`with watch("sampling", estimate=s): ...`) and a summary of where
    the time went, beside the estimates printed before each part. A part entered several times adds up its
    times and its estimates."""

    def __init__(self):
        # name -> [seconds, estimated seconds (None: never estimated), calls, calls with an estimate]
        self.parts: dict[str, list] = {}

    @contextmanager
    def __call__(self, name: str, estimate: float | None = None):
        if estimate is not None:
            print(f"{name}: estimated {_duration(estimate)} on this machine")
        start = time.perf_counter()
        try:
            yield
        finally:
            spent, guess, calls, guessed = self.parts.get(name, [0.0, None, 0, 0])
            if estimate is not None:
                guess, guessed = (guess or 0.0) + estimate, guessed + 1
            self.parts[name] = [spent + time.perf_counter() - start, guess, calls + 1, guessed]

    def summary(self) -> str:
        total = sum(part[0] for part in self.parts.values())
        width = max((len(name) for name in self.parts), default=0)
        lines = [f"where the time went ({_duration(total)} in all):"]
        for name, (spent, guess, calls, guessed) in self.parts.items():
            some = f" for {guessed} of {calls} runs" if guessed < calls else ""
            note = f" (estimated {_duration(guess)}{some})" if guess is not None else ""
            lines.append(
                f"  {name:<{width}}  {_duration(spent):>9}  {100 * spent / max(total, 1e-9):5.1f}%{note}"
            )
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    return (
        f"{seconds:.1f} s"
        if seconds < 90
        else f"{seconds / 60:.1f} min"
        if seconds < 5400
        else f"{seconds / 3600:.1f} h"
    )


def per_call(total: int, batch: int) -> int:
    """Calls of a batched function needed for `total` items at `batch` per call."""
    return math.ceil(total / max(batch, 1))
