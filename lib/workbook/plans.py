"""What a training plan is and how it is made: `TrainingPlan` (stored as `budget.json` in its run folder), the
probe of the real loop that measures the pace, the schedules laid over the steps that fit (`fit_schedules`), and
the arithmetic of the first phase and of the re-plan. lib.workbook.budget runs them (`train_within`,
`plan_training`); besides the probe and the plan file, everything here is plain arithmetic, so the re-plan is
tested without timing.
"""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from ..common import files
from ..train import checkpoints as ckpt
from ..train.config import TrainConfig
from ..train.loop import train
from .findings import counted

TRAIN_SCHEDULE_FIELDS = ("warmup_steps",)  # TrainConfig fields counted in steps
MODEL_SCHEDULE_FIELDS = (
    "kl_warmup_steps",
    "kl_warmup_start",
    "capacity_steps",
)  # model-config fields in steps
PLAN_FILE = "budget.json"
PROBE_WARMUP = 2  # untimed probe steps: compilation, autotuning, the allocator's first requests
PROBE_SHARE, PROBE_MIN_SECONDS, PROBE_MAX_SECONDS = 0.03, 2.0, 20.0  # the probe's timed window
PROBE_MAX_STEPS = 200  # ... or this many timed steps, whichever ends first (fast GPUs)
PLAN_PROBE_SHARE = 0.05  # plan_training's window: with no re-plan after it, the probe is all it has
FIRST_SHARE = 0.1  # the first phase trains this share of the budget, then the run re-plans
FIRST_MAX_SHARE = 0.25  # ... and at most this share of the first plan's steps
FIRST_RECORDS = 10  # metrics records the first phase writes at least: its pace is measured over them
FIRST_MIN_WINDOWS = 3  # with fewer timed windows, the first phase's pace is pooled with the probe's
KEEP_WITHIN = 0.03  # the re-plan keeps the first plan when the steps that fit differ by at most this share
OUTLIER = 2.0  # a metrics window this many times off the median pace is a load spike, not the run's pace


def now() -> float:
    """The clock of the budget's own timing (a test replaces it to make plans deterministic)."""
    return time.monotonic()


@dataclass(frozen=True)
class TrainingPlan:
    minutes: float  # the training budget
    probe_img_per_s: float  # throughput of the real loop measured by the probe (images per second)
    steps: int  # steps of the run; every schedule is laid over them (the first plan's until the re-plan)
    epochs: float  # passes over the training images those steps make
    probe_seconds: float  # wall time the probe itself took
    probe_steps: int = 0  # timed steps of the probe
    first_steps: int = 0  # the probe's plan, before the re-plan
    first_stop: int = 0  # the first phase ends at this step at the latest; 0: no re-plan (plan_training)
    first_log_every: int = 0  # metrics records of the first phase every this many steps
    first_minutes: float = 0.0  # ... and it ends after this much training (per session) at the latest
    replan_step: int | None = None  # the step the run re-planned at; None: not yet (or plan_training's plan)
    run_img_per_s: float | None = None  # the run's pace over its first phase (the re-plan's input)
    session_seconds: float | None = None  # fixed cost of a training session, measured in the first phase
    spent_seconds: float = 0.0  # probe + training sessions so far, on the budget's clock (train_within)
    actual: dict | None = None  # {"steps", "minutes", "img_per_s"} once the run has ended

    @property
    def replans(self) -> bool:
        """Whether this plan is still to be re-planned in its run (train_within, before its re-plan step)."""
        return self.first_stop > 0 and self.replan_step is None

    def describe(self) -> str:
        first = self.first_steps or self.steps
        text = (
            f"{self.minutes:g} min at {_rate(self.probe_img_per_s)} img/s (probe) -> {counted(first, 'step')}"
        )
        if self.replan_step is not None:
            pace = f"{_rate(self.run_img_per_s)} img/s in the run"
            text += (
                f"; re-planned at step {self.replan_step:,} from {pace} -> {counted(self.steps, 'step')}"
                if self.steps != first
                else f"; kept at step {self.replan_step:,} ({pace})"
            )
        return text + f" = {self.epochs:.2f} epochs"

    def outcome(self) -> str:
        """The one line of planned vs actual (steps, minutes, img/s); needs `actual`."""
        done = self.actual
        if self.replan_step is None:
            planned = (
                f"{counted(self.steps, 'step')} at {_rate(self.probe_img_per_s)} img/s (the probe's pace)"
            )
        else:
            change = "re-planned" if self.steps != self.first_steps else "kept"
            planned = (
                f"{counted(self.steps, 'step')} at {_rate(self.run_img_per_s)} img/s ({change} at step {self.replan_step:,}"
                f" from the probe's {self.first_steps:,} at {_rate(self.probe_img_per_s)} img/s)"
            )
        return (
            f"training budget {self.minutes:g} min: planned {planned}; actual {counted(done['steps'], 'step')} in "
            f"{done['minutes']:.2f} min ({100 * (done['minutes'] / self.minutes - 1):+.0f}%) at "
            f"{_rate(done['img_per_s'])} img/s"
        )


def _rate(img_per_s: float) -> str:
    return f"{img_per_s:,.0f}" if img_per_s >= 100 else f"{img_per_s:.3g}"


@dataclass(frozen=True)
class Probe:
    img_per_s: float  # images per second over the timed steps
    steps: int  # timed steps
    seconds: float  # their wall time


def probe_img_per_s(
    model: torch.nn.Module,
    x,
    train_cfg: TrainConfig,
    device,
    seconds: float = 5.0,
    max_steps: int = PROBE_MAX_STEPS,
    warmup: int = PROBE_WARMUP,
) -> Probe:
    """The pace of the real training loop on a copy of `model`, in a temporary run folder deleted afterwards:
    `warmup` untimed steps in a first session (compilation, autotuning), then a second session resuming it, timed
    step by step, until `seconds` or `max_steps` have passed; its pace is run_img_per_s's over those steps (the
    first left out: a second compilation, if any; and load spikes)."""
    base = replace(
        train_cfg,
        log_every=1,
        ckpt_every=10**9,
        keep_ckpts=1,
        n_samples=0,
        sample_every=0,
        max_minutes=0.0,
        warmup_steps=0,
        schedule="constant",
    )
    with tempfile.TemporaryDirectory(prefix="probe-") as folder, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="resuming .* with a changed TrainConfig")  # steps: ours
        model = copy.deepcopy(model)
        train(model, x, replace(base, steps=warmup), Path(folder), device=device, use_wandb=False)
        timed_cfg = replace(base, steps=warmup + max_steps, max_minutes=seconds / 60)
        train(model, x, timed_cfg, Path(folder), device=device, use_wandb=False)
        records = files.read_jsonl(Path(folder) / "metrics.jsonl")
    timed = [r for r in records if r["step"] > warmup]
    timed = timed[1:] or timed  # as run_img_per_s counts them
    seconds = sum(train_cfg.batch_size / r["img_per_s"] for r in timed)
    return Probe(run_img_per_s(records, warmup, train_cfg.batch_size), len(timed), seconds)


def probe_window(minutes: float, share: float = PROBE_SHARE) -> float:
    """Seconds of the probe's timed window for a budget: `share` of it within [PROBE_MIN_SECONDS,
    PROBE_MAX_SECONDS], and never more than a tenth of it."""
    return min(max(share * 60 * minutes, PROBE_MIN_SECONDS), PROBE_MAX_SECONDS, 6 * minutes)


def steps_that_fit(seconds: float, img_per_s: float, batch_size: int) -> int:
    """Steps of `batch_size` images that `seconds` hold at `img_per_s` (at least one)."""
    return max(1, int(max(seconds, 0.0) * img_per_s / batch_size))


def fit_schedules(model_cfg, train_cfg: TrainConfig, steps: int):
    """(model_cfg, train_cfg) for a run of `steps` steps: every schedule length in steps (TRAIN_SCHEDULE_FIELDS,
    MODEL_SCHEDULE_FIELDS) scaled by steps / train_cfg.steps, so warm-ups keep their share of the run; no
    wall-time cap (the steps are the budget)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    scale = steps / train_cfg.steps

    def scaled(cfg, names):
        present = {f.name for f in fields(cfg)}
        return replace(
            cfg,
            **{
                n: (max(1, round(getattr(cfg, n) * scale)) if getattr(cfg, n) else 0)
                for n in names
                if n in present
            },
        )

    return scaled(model_cfg, MODEL_SCHEDULE_FIELDS), replace(
        scaled(train_cfg, TRAIN_SCHEDULE_FIELDS), steps=steps, max_minutes=0.0
    )


def check_minutes(minutes) -> None:
    """Refuse a budget that is not a finite number of minutes > 0, or one for several processes."""
    if (
        isinstance(minutes, bool)
        or not isinstance(minutes, (int, float))
        or not (math.isfinite(minutes) and minutes > 0)
    ):
        raise ValueError(f"minutes must be a finite number > 0, got {minutes!r}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "a training budget is planned for one process; under torchrun give the steps (--steps) instead"
        )


def read_plan(folder: str | Path) -> TrainingPlan | None:
    """The plan stored in run `folder`, when the folder also holds checkpoints (else None: plan afresh)."""
    stored = Path(folder) / PLAN_FILE
    if not (stored.is_file() and ckpt.list_checkpoints(folder)):
        return None
    known = {f.name for f in fields(TrainingPlan)}
    return TrainingPlan(**{k: v for k, v in json.loads(stored.read_text()).items() if k in known})


def store_plan(folder: Path, plan: TrainingPlan) -> None:
    files.atomic_write_json(folder / PLAN_FILE, asdict(plan))


def probe_plan(model, train_cfg: TrainConfig, x, device, minutes: float, share: float) -> TrainingPlan:
    """The first plan: probe the loop (a window of `share` of the budget), then the steps that fit the rest."""
    start = now()
    probe = probe_img_per_s(model, x, train_cfg, device, seconds=probe_window(minutes, share))
    probe_seconds = now() - start
    steps = steps_that_fit(60 * minutes - probe_seconds, probe.img_per_s, train_cfg.batch_size)
    return TrainingPlan(
        minutes,
        round(probe.img_per_s, 1),
        steps,
        steps * train_cfg.batch_size / len(x),
        round(probe_seconds, 1),
        probe_steps=probe.steps,
        first_steps=steps,
    )


def first_phase(plan: TrainingPlan, train_cfg: TrainConfig) -> TrainingPlan:
    """`plan` with its first phase: FIRST_SHARE of the budget in training time, at most FIRST_MAX_SHARE of its
    steps (rounded up to whole records), records often enough for FIRST_RECORDS of them at the probe's pace."""
    cap = max(1, math.ceil(FIRST_MAX_SHARE * plan.steps))
    expected = min(cap, FIRST_SHARE * 60 * plan.minutes * plan.probe_img_per_s / train_cfg.batch_size)
    log_every = int(min(max(expected // FIRST_RECORDS, 1), train_cfg.log_every))
    stop = min(plan.steps, math.ceil(cap / log_every) * log_every)
    return replace(plan, first_stop=stop, first_log_every=log_every, first_minutes=FIRST_SHARE * plan.minutes)


def timed_windows(records: list[dict], since_step: int) -> list[tuple[int, float]]:
    """(steps, img/s) of the metrics windows after `since_step` (one session's), without the session's first window
    (start-up, warm-up) unless it is the only one, and without windows more than OUTLIER times off the median pace
    (a load spike on a shared machine, either way)."""
    later = [r for r in records if r["step"] > since_step]
    starts = [since_step] + [r["step"] for r in later[:-1]]
    windows = [(r["step"] - start, r["img_per_s"]) for start, r in zip(starts, later)]
    timed = windows[1:] or windows
    if not timed:
        return []
    median = statistics.median(pace for _, pace in timed)
    return [(n, pace) for n, pace in timed if median / OUTLIER <= pace <= median * OUTLIER]


def run_img_per_s(records: list[dict], since_step: int, batch_size: int) -> float:
    """Images per second of the timed windows after `since_step`: their images over their time (NaN: none)."""
    kept = timed_windows(records, since_step)
    if not kept:
        return math.nan
    return sum(n for n, _ in kept) * batch_size / sum(n * batch_size / pace for n, pace in kept)


def first_phase_pace(plan: TrainingPlan, records: list[dict], since_step: int, batch_size: int) -> float:
    """The pace the re-plan uses: the first phase's timed windows after `since_step`; with fewer than
    FIRST_MIN_WINDOWS of them (a probe that underrated the pace stops the phase at its step cap early), pooled with
    the probe's timed steps, images over time of both, since one or two windows are one or two samples of a noisy
    machine. NaN when the phase has no window."""
    kept = timed_windows(records, since_step)
    if not kept:
        return math.nan
    images = sum(n for n, _ in kept) * batch_size
    seconds = sum(n * batch_size / pace for n, pace in kept)
    if len(kept) < FIRST_MIN_WINDOWS and plan.probe_steps:
        images += plan.probe_steps * batch_size
        seconds += plan.probe_steps * batch_size / plan.probe_img_per_s
    return images / seconds


def replanned_steps(
    plan: TrainingPlan, step: int, session_seconds: float, img_per_s: float, batch: int
) -> int:
    """Steps of the run re-planned at `step` from the run's pace `img_per_s`: the budget left after the time spent
    (plan.spent_seconds) and one more session's fixed cost; the first plan when they differ by at most KEEP_WITHIN
    of it, or when the first phase ended it."""
    if step >= plan.first_steps:
        return plan.first_steps
    left = 60 * plan.minutes - plan.spent_seconds - session_seconds
    steps = max(step + int(max(left, 0.0) * img_per_s / batch), 1)
    return plan.first_steps if abs(steps - plan.first_steps) <= KEEP_WITHIN * plan.first_steps else steps
