"""Budgets a user can trust: minutes become steps, every cost is estimated before it is spent, and a notebook
says at the end where its time went.

- `plan_training` turns a training budget in minutes into a step count from a short throughput probe of the real
  loop (`lib.train.train` on a copy of the model) on the machine at hand, then lays every schedule over those
  steps (`fit_schedules`: LR warm-up and cosine, NVAE's KL warm-up, the capacity annealing), so a budgeted run
  ends with its schedules complete. The plan is stored in the run folder (`budget.json`) and reused when the run
  resumes or is loaded, so a second execution neither probes again nor changes the schedule under a checkpoint.
- `estimate_seconds` times a few calls of a costly function and extrapolates; `Stopwatch` collects the time of
  each part of a notebook, beside its estimate.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from ..common import files, paths
from ..train.checkpoints import list_checkpoints
from ..train.config import TrainConfig
from ..train.loop import train

TRAIN_SCHEDULE_FIELDS = ("warmup_steps",)  # TrainConfig fields counted in steps
MODEL_SCHEDULE_FIELDS = (
    "kl_warmup_steps",
    "kl_warmup_start",
    "capacity_steps",
)  # model-config fields in steps
PLAN_FILE = "budget.json"


@dataclass(frozen=True)
class TrainingPlan:
    minutes: float  # the training budget
    probe_img_per_s: (
        float  # throughput of the real loop measured by the probe (images per second, all processes)
    )
    steps: int  # steps that fit the budget; every schedule is laid over them
    epochs: float  # passes over the training images those steps make
    probe_seconds: float  # wall time the probe itself took

    def describe(self) -> str:
        return (
            f"{self.minutes:g} min at {self.probe_img_per_s:,.0f} img/s (probe) -> {self.steps:,} steps "
            f"= {self.epochs:.2f} epochs"
        )


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def probe_img_per_s(
    model: torch.nn.Module, x, train_cfg: TrainConfig, device, n_steps: int = 6, warmup: int = 2
) -> float:
    """Images per second of the real training loop on a copy of `model`: `warmup` untimed steps (compilation,
    autotuning), then `n_steps` timed ones, in a temporary run folder that is deleted afterwards."""
    cfg = replace(
        train_cfg,
        steps=warmup + n_steps,
        log_every=warmup,
        ckpt_every=10**9,
        n_samples=0,
        sample_every=0,
        max_minutes=0.0,
        warmup_steps=0,
    )
    with tempfile.TemporaryDirectory(prefix="probe-") as folder:
        train(copy.deepcopy(model), x, cfg, Path(folder), device=device, use_wandb=False)
        records = files.read_jsonl(Path(folder) / "metrics.jsonl")
    timed = [r for r in records if r["step"] > warmup]  # the windows after the warm-up steps
    return sum(r["img_per_s"] for r in timed) / len(timed)


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
    minutes left after the probe into steps, fit the schedules to them. A run folder that already holds
    checkpoints reuses its stored plan (no probe), so resuming or loading keeps the schedule it was trained on."""
    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes}")
    folder = Path(run) if isinstance(run, Path) else paths.run_dir(str(run))
    stored = folder / PLAN_FILE
    if stored.is_file() and list_checkpoints(folder):
        plan = TrainingPlan(**json.loads(stored.read_text()))
        log(f"training plan (stored with the run): {plan.describe()}")
    else:
        start = time.monotonic()
        img_per_s = probe_img_per_s(model, x, train_cfg, device)
        probe_seconds = time.monotonic() - start
        left = max(60 * minutes - probe_seconds, 0.0)
        steps = max(1, int(left * img_per_s / train_cfg.batch_size))
        plan = TrainingPlan(
            minutes,
            round(img_per_s, 1),
            steps,
            steps * train_cfg.batch_size / len(x),
            round(probe_seconds, 1),
        )
        files.atomic_write_json(stored, plan.__dict__)
        log(f"training plan: {plan.describe()}; the probe took {probe_seconds:.0f} s")
    return (*fit_schedules(model_cfg, train_cfg, plan.steps), plan)


def estimate_seconds(fn: Callable[[], object], n_calls: int, device="cpu", n_timed: int = 2) -> float:
    """Seconds that `n_calls` calls of `fn` will take, from one untimed warm-up call and `n_timed` timed ones."""
    if n_calls <= 0:
        return 0.0
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
