"""Budgets a user can trust: minutes become steps, every cost is estimated before it is spent, and a notebook
says at the end where its time went.

`train_within(minutes, name, ...)` trains a run within a budget of wall-clock minutes, with every schedule (LR
warm-up and cosine, NVAE's KL warm-up, the capacity annealing: `fit_schedules`) complete at its end:
1. a probe of the real loop (`lib.train.train`) on a copy of the model, in a temporary folder: PROBE_WARMUP untimed
   steps (compilation, autotuning, the allocator's first requests), then timed steps for PROBE_SHARE of the
   budget (PROBE_MIN_SECONDS to PROBE_MAX_SECONDS) or PROBE_MAX_STEPS, whichever ends first;
2. the plan: the steps that fit the minutes left at the probe's pace, every schedule laid over them, stored as
   `budget.json` in the run folder, so resuming or loading the run reuses it (no second probe, no schedule
   changed under a checkpoint);
3. the run itself, like any run of `lib.train.train`; planned vs actual (steps, minutes, img/s) is stored in
   `budget.json`, printed in one line and copied into the results record (lib.workbook.results).
Earlier versions also re-planned once from the run's own pace (300 more lines). On the ten budgeted cpu runs
(outputs/results/*-cpu.json, `budget`) runs ended 3.3% off their budgets on average with it (at most 11.2%) and an
estimated 4.3% without (at most 13.5%, NCSN): a point of accuracy did not earn the lines (README: Training budgets).

`estimate_seconds` times a few calls of a costly function and extrapolates; `Stopwatch` collects the time of each
part of a notebook, beside its estimate.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from ..common import files, paths
from ..models import build
from ..train import checkpoints as ckpt
from ..train import run_folder
from ..train.config import TrainConfig
from ..train.loop import TrainResult, train
from .findings import counted
from .training import train_or_load

TRAIN_SCHEDULE_FIELDS = ("warmup_steps",)  # TrainConfig fields counted in steps
MODEL_SCHEDULE_FIELDS = ("kl_warmup_steps", "kl_warmup_start", "capacity_steps")  # model fields in steps
PLAN_FILE = "budget.json"
PROBE_WARMUP = 2  # untimed probe steps: compilation, autotuning, the allocator's first requests
PROBE_SHARE, PROBE_MIN_SECONDS, PROBE_MAX_SECONDS = 0.04, 2.0, 45.0  # the probe's timed window
PROBE_MAX_STEPS = 200  # ... or this many timed steps, whichever ends first (fast GPUs)


@dataclass(frozen=True)
class TrainingPlan:
    minutes: float  # the training budget
    probe_img_per_s: float  # throughput of the real loop measured by the probe (images per second)
    steps: int  # steps of the run; every schedule is laid over them
    epochs: float  # passes over the training images those steps make
    probe_seconds: float  # wall time the probe itself took
    probe_steps: int = 0  # timed steps of the probe
    actual: dict | None = None  # {"steps", "minutes", "img_per_s"} once the run has ended

    def describe(self) -> str:
        rate = _rate(self.probe_img_per_s)
        return f"{self.minutes:g} min at {rate} img/s (probe) -> {counted(self.steps, 'step')} = {self.epochs:.2f} epochs"

    def outcome(self) -> str:
        """The one line of planned vs actual (steps, minutes, img/s); needs `actual`."""
        done = self.actual
        return (
            f"training budget {self.minutes:g} min: planned {counted(self.steps, 'step')} at "
            f"{_rate(self.probe_img_per_s)} img/s (the probe's pace); actual {counted(done['steps'], 'step')} in "
            f"{done['minutes']:.2f} min ({100 * (done['minutes'] / self.minutes - 1):+.0f}%) at "
            f"{_rate(done['img_per_s'])} img/s"
        )


def _rate(img_per_s: float) -> str:
    return f"{img_per_s:,.0f}" if img_per_s >= 100 else f"{img_per_s:.3g}"


def now() -> float:
    """The clock of the budget's own timing (a test replaces it to make plans deterministic)."""
    return time.monotonic()


def probe_img_per_s(model, x, train_cfg: TrainConfig, device, seconds: float = 5.0) -> tuple[float, int]:
    """(images per second, timed steps) of the real training loop on a copy of `model`, in a temporary run
    folder deleted afterwards: PROBE_WARMUP untimed steps in a first session, then a second session resuming it,
    timed step by step until `seconds` or PROBE_MAX_STEPS have passed (its first step left out: a second
    compilation, if any)."""
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
        train(model, x, replace(base, steps=PROBE_WARMUP), Path(folder), device=device, use_wandb=False)
        timed_cfg = replace(base, steps=PROBE_WARMUP + PROBE_MAX_STEPS, max_minutes=seconds / 60)
        train(model, x, timed_cfg, Path(folder), device=device, use_wandb=False)
        records = files.read_jsonl(Path(folder) / "metrics.jsonl")
    timed = [r for r in records if r["step"] > PROBE_WARMUP]
    timed = timed[1:] or timed
    seconds = sum(train_cfg.batch_size / r["img_per_s"] for r in timed)
    return len(timed) * train_cfg.batch_size / seconds, len(timed)


def probe_window(minutes: float) -> float:
    """Seconds of the probe's timed window for a budget: PROBE_SHARE of it within [PROBE_MIN_SECONDS,
    PROBE_MAX_SECONDS], and never more than a tenth of it."""
    return min(max(PROBE_SHARE * 60 * minutes, PROBE_MIN_SECONDS), PROBE_MAX_SECONDS, 6 * minutes)


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
        present = {f.name for f in fields(cfg)} & set(names)
        lengths = {n: max(1, round(getattr(cfg, n) * scale)) if getattr(cfg, n) else 0 for n in present}
        return replace(cfg, **lengths)

    fitted_train = replace(scaled(train_cfg, TRAIN_SCHEDULE_FIELDS), steps=steps, max_minutes=0.0)
    return scaled(model_cfg, MODEL_SCHEDULE_FIELDS), fitted_train


def fitted_configs(model_cfg, train_cfg: TrainConfig, steps: int):
    """(model_cfg, train_cfg) with every schedule laid over `steps` (fit_schedules), keeping the caller's
    max_minutes (the hard stop of a session): the configs a budgeted run trains under."""
    model_cfg, fitted = fit_schedules(model_cfg, train_cfg, steps)
    return model_cfg, replace(fitted, max_minutes=train_cfg.max_minutes)


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
    """The plan stored in run `folder`, when the folder also holds checkpoints (else None: plan afresh). Fields of
    older plans (the re-plan's) are ignored."""
    stored = Path(folder) / PLAN_FILE
    if not (stored.is_file() and ckpt.list_checkpoints(folder)):
        return None
    known = {f.name for f in fields(TrainingPlan)}
    return TrainingPlan(**{k: v for k, v in json.loads(stored.read_text()).items() if k in known})


def store_plan(folder: Path, plan: TrainingPlan) -> None:
    files.atomic_write_json(folder / PLAN_FILE, asdict(plan))


def probe_plan(model, train_cfg: TrainConfig, x, device, minutes: float) -> TrainingPlan:
    """The plan: probe the loop, then the steps that fit the minutes left after the probe."""
    start = now()
    img_per_s, timed_steps = probe_img_per_s(model, x, train_cfg, device, seconds=probe_window(minutes))
    probe_seconds = now() - start
    steps = steps_that_fit(60 * minutes - probe_seconds, img_per_s, train_cfg.batch_size)
    epochs = steps * train_cfg.batch_size / len(x)
    return TrainingPlan(minutes, round(img_per_s, 1), steps, epochs, round(probe_seconds, 1), timed_steps)


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
    time: probe, plan, train (module docstring); returns (result, plan). The run stores lib.workbook.training's
    model config (`run_record`: data, extra such as the preset), so train_or_load and load_run_model read it back.
    init_from starts from another run's weights (staged training); resume=False starts afresh, moving an earlier
    run aside; stop_at ends this session at that step, as in lib.train.train; a rerun resumes, and a finished run
    is loaded. train_cfg.max_minutes stays a hard stop of each session."""
    check_minutes(minutes)
    folder = Path(run) if isinstance(run, os.PathLike) else paths.run_dir(str(run))
    if not resume:
        with run_folder.RunLock(folder):
            run_folder.move_aside(folder)
    plan = read_plan(folder)
    if plan is not None:
        log(f"training plan (stored with the run): {plan.describe()}")
        if plan.minutes != minutes:
            log(f"  its budget is {plan.minutes:g} min, not {minutes:g}: use another run, or resume=False")
    else:
        plan = probe_plan(build(name, model_cfg, seed), train_cfg, x, device, minutes)
        folder.mkdir(parents=True, exist_ok=True)
        store_plan(folder, plan)
        log(f"training plan: {plan.describe()}; the probe took {plan.probe_seconds:.0f} s")
    model_cfg, fitted = fitted_configs(model_cfg, train_cfg, plan.steps)
    result = train_or_load(name, model_cfg, fitted, x, folder, device, data, seed, init_from=init_from,
                           stop_at=stop_at, use_wandb=use_wandb, **extra)  # fmt: skip
    if result.step >= plan.steps:
        plan = record_outcome(folder, result) or plan
        log(plan.outcome())
    return result, plan


def record_outcome(
    folder: str | Path, result: TrainResult, log: Callable | None = None
) -> TrainingPlan | None:
    """The stored plan of run `folder` with its outcome (`actual`: steps, the probe's plus the loop's training
    minutes, img/s) from `result`, stored and logged in one line when new; None for a run without a budget."""
    plan = read_plan(folder)
    if plan is None:
        return None
    if plan.actual is None or plan.actual["steps"] != result.step:
        minutes = (plan.probe_seconds + result.wall_seconds) / 60
        actual = {"steps": result.step, "minutes": round(minutes, 3), "img_per_s": round(result.img_per_s, 1)}
        plan = replace(plan, actual=actual)
        store_plan(Path(folder), plan)
        if log is not None:
            log(plan.outcome())
    return plan


@dataclass
class Fitted:
    """One trained (or loaded) run with the configs it trained under (a budget fits the schedules to the steps, so
    they may differ from the ones asked for) and its plan (None without a budget)."""

    result: TrainResult
    model_cfg: object
    train_cfg: TrainConfig
    plan: TrainingPlan | None = None


def fit(
    name: str, model_cfg, train_cfg: TrainConfig, x, run, device, minutes: float = 0.0, **train_args
) -> Fitted:
    """Train (or resume, or load) run `run` of family `name` on uint8 images x: within `minutes` of wall time
    (train_within), or for train_cfg.steps when minutes is 0 (train_or_load). train_args: data, seed, init_from
    and the stored extras (e.g. preset)."""
    if minutes:
        result, plan = train_within(minutes, name, model_cfg, train_cfg, x, run, device, **train_args)
        return Fitted(result, *fitted_configs(model_cfg, train_cfg, plan.steps), plan)
    return Fitted(
        train_or_load(name, model_cfg, train_cfg, x, run, device, **train_args), model_cfg, train_cfg
    )


# --- costs of the other parts of a notebook -------------------------------------------------------------------


def estimate_seconds(fn: Callable[[], object], n_calls: int, device="cpu", n_timed: int = 2) -> float:
    """Seconds that `n_calls` calls of `fn` will take, from one untimed warm-up call and `n_timed` timed ones.
    `fn` is an evaluation (a bound's decoder call, a score, a sampler's draw), so it runs without autograd, as the
    evaluation it stands for does: with a graph, one call of NVAE's log_weights on 50 images x 10 copies held more
    than 20 GB and a 24 GB machine killed notebook 05's kernel."""
    if n_calls <= 0:
        return 0.0
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    with torch.no_grad():
        fn()
        sync()
        start = time.perf_counter()
        for _ in range(n_timed):
            fn()
        sync()
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
            share = 100 * spent / max(total, 1e-9)
            lines.append(f"  {name:<{width}}  {_duration(spent):>9}  {share:5.1f}%{note}")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def per_call(total: int, batch: int) -> int:
    """Calls of a batched function needed for `total` items at `batch` per call."""
    return math.ceil(total / max(batch, 1))
