"""The one training loop shared by every model family (the model interface: `loss` and `sample`).

A model offers `loss(x, step) -> (loss, stats)` and `sample(n) -> (n, 3, 32, 32) in [0, 1]`. `train()` adds
what every family needs, identically, so comparisons are fair: autocast where the device computes bf16 natively
(fp16 with loss scaling on older GPUs; lib.common.accelerator decides `amp="auto"`), an EMA of the weights
(sampling and evaluation use it), gradient clipping, skipping of non-finite updates (VDVAE's "poisoned"
updates) with a clear error after `max_bad_steps` in a row, warm-up and cosine learning-rate decay, sample
grids, a tqdm bar, JSON-lines metrics (mirrored to wandb), atomic checkpoints with exact resume, and
DistributedDataParallel under torchrun (per-rank data shards, skips agreed by all ranks, rank-0 logging and
checkpoints). A normal step never waits for the host: the skip decision, its counters and the log sums stay on the
device (skipping, log_window) and are read when a record or checkpoint is written; the speed options
(compile, channels-last, fused optimizer, cuDNN autotuning, TF32) live in TrainConfig (config) and speed.

Run it from notebooks, or from the shell with `python -m lib.train <model> --key value ...` (see cli).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torchvision.utils import save_image
from tqdm.std import tqdm  # text, not a notebook widget: a saved notebook shows the bar's last state

from ..common import accelerator
from ..common.devices import pick_device, seed_everything
from ..data import InfiniteBatches
from . import checkpoints as ckpt
from . import run_folder, speed
from .config import TrainConfig, lr_at
from .distributed import distributed_context
from .ema import EMA
from .interrupts import Interrupted, StopRequest, interrupted_now, stop_if_asked
from .log_window import Window
from .logger import RunLogger
from .skipping import GuardedStep, NonFiniteError, SkipCounts, Snapshot, all_finite, non_finite_message

__all__ = ["NonFiniteError", "TrainResult", "distributed_context", "train"]


@dataclass
class TrainResult:
    model: nn.Module  # the trained weights
    ema: nn.Module  # their EMA (use this for sampling and evaluation)
    step: int  # steps done, counting earlier sessions of a resumed run
    wall_seconds: float  # training wall time over all sessions
    img_per_s: float  # training throughput over the whole run: images / wall_seconds (all processes)
    n_skipped: int  # non-finite updates skipped over the whole run
    folder: Path  # the run folder
    precision: str = ""  # this session's autocast: bf16 | fp16 | off (what amp="auto" became)


class _Objective(nn.Module):
    """Wraps model.loss as forward() so DistributedDataParallel can hook it (DDP only syncs forward calls)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, step: int):
        return self.model.loss(x, step)


def train(
    model: nn.Module,
    x,
    cfg: TrainConfig,
    run: str | Path,
    *,
    resume: bool = True,
    model_config: dict | None = None,
    device: str | torch.device | None = None,
    stop_at: int | None = None,
    init_from: str | Path | None = None,
    use_wandb: bool = True,
) -> TrainResult:
    """Train `model` on uint8 images `x` (N, 3, 32, 32) for cfg.steps; returns the model and its EMA.

    run: a run name (a str: a plain folder name under outputs/runs, or outputs/smoke/runs in smoke mode) or a
    folder (a pathlib.Path). One process at a time may train into a folder (a lock; DDP: rank 0 holds it).
    resume: continue from the newest checkpoint in the folder, if any; its model_config must equal this call's
    (else ConfigMismatchError, before anything is written). resume=False starts afresh and moves an earlier run
    into <folder>/previous-<time>/. stop_at: end this session at that step (checkpointed) without changing the
    schedule, like an interruption; stop_at=0 loads a run (drawing its final sample grid if a kill left it out).
    init_from: start from the weights (model and EMA) of another run's checkpoint, with a fresh optimizer and
    schedule (staged training). SIGTERM or Ctrl-C checkpoint the current step, then stop (SystemExit 143 or
    KeyboardInterrupt, saying where the checkpoint is); rerunning resumes from it.
    """
    rank, local_rank, world = distributed_context()
    device = torch.device(device) if device else pick_device()
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
    with speed.backend_flags(cfg, device):  # TF32 and cuDNN autotuning for training only, then as they were
        loop = _Loop(
            model.to(device), x, cfg, run_folder.resolve(run), device, rank, world, model_config or {}
        )
        return _train(loop, resume, init_from, stop_at, use_wandb)


def _train(loop: _Loop, resume: bool, init_from, stop_at: int | None, use_wandb: bool) -> TrainResult:
    cfg = loop.cfg
    with StopRequest() as loop.stop_request:
        try:
            loop.start(resume=resume, init_from=init_from, use_wandb=use_wandb)
            loop.run(min(stop_at, cfg.steps) if stop_at is not None else cfg.steps)
            loop.draw_missing_grid()
            stop_if_asked(loop, final=True)
        except Interrupted:
            raise
        except KeyboardInterrupt as err:
            raise interrupted_now(loop) from err
        finally:
            loop.close()
    return loop.result()


class _Loop:
    """The loop's state and its small named steps; `train()` is the public entry point."""

    def __init__(self, model, x, cfg, folder, device, rank, world, model_config):
        self.channels_last = speed.channels_last_on(model, cfg, device)  # "auto": per net (lib.nets)
        model = speed.to_memory_format(model, self.channels_last)
        self.model, self.cfg, self.folder, self.device = model, cfg, Path(folder), device
        self.rank, self.world, self.is_main = rank, world, rank == 0
        self.batches = InfiniteBatches(
            x, cfg.batch_size, device=device, seed=cfg.seed, flip=cfg.flip, rank=rank, world_size=world
        )
        self.objective = _Objective(model)
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.objective = nn.parallel.DistributedDataParallel(self.objective, device_ids=ids)
        self.optimizer, fused = speed.make_optimizer(cfg, model.parameters(), device)
        self.guard = GuardedStep(self.optimizer, fused)  # applies an update only where it is finite
        self.precision = accelerator.resolve_amp(cfg.amp, device)  # "auto" decided once, by the device's bf16
        # fp16 scales the loss (its range underflows small gradients); on the CPU too, so the path a T4 takes by
        # default runs, and is tested, here
        scaled = self.precision.grad_scaler and device.type in ("cuda", "cpu")
        self.scaler = torch.amp.GradScaler(device.type, enabled=scaled)
        self.ema = EMA(model, cfg.ema_decay, cfg.ema_warmup)
        self.compiled = speed.CompiledNetworks(model, cfg, device)  # after the EMA's copy: it samples eagerly
        self.bn_state = Snapshot(model.buffers())  # BN statistics: restored after a skipped step
        self.counts = SkipCounts(cfg.max_bad_steps, device)  # skips and streaks, on the device
        self.window = Window()  # the log window's sums, on the device
        self.config = {
            "train": asdict(cfg),
            "model": model_config,
            "world_size": world,
            "n_params": sum(p.numel() for p in model.parameters()),
            "precision": {"amp": self.precision.amp, "why": self.precision.why},  # what amp="auto" became
        }
        self.step, self.wall_before, self.logger, self.bar = 0, 0.0, None, None
        self.lock, self.stop_request, self.saved_step = None, None, None  # set by start(), train(), _save()
        self.session_start, self.session_step0 = time.monotonic(), None  # set by start()

    # --- start and finish -------------------------------------------------------------------------
    def start(self, resume: bool, init_from, use_wandb: bool) -> None:
        """Claim the folder, then resume from its newest checkpoint, or initialise (optionally from another run's
        weights). Every check that can refuse the run comes before the first write of run records."""
        self.lock = run_folder.claim(self.folder, resume, self.is_main, self.world, self.device)
        existing = ckpt.list_checkpoints(self.folder) if resume else []
        if existing:  # the newest that loads; a damaged newer one is moved aside, with a warning
            self._resume_from(*ckpt.load_newest_readable(existing, move_aside=self.is_main))
        else:
            seed_everything(self.cfg.seed * 1000 + self.rank)  # a different loop RNG stream per rank
            if init_from is not None:
                source = run_folder.newest_checkpoint(init_from)
                state = ckpt.load_checkpoint(source)  # on the CPU: load_weights copies to the device
                ckpt.load_weights(self.model, state["model"], source)
                ckpt.load_weights(self.ema.model, state["ema"], source)
        if self.is_main:
            self.logger = RunLogger(
                self.folder, self.config, use_wandb=use_wandb, resume_at=self.step if existing else None
            )
            print(
                f"{self.folder.name}: {self.precision.describe()} on {self.device}",
                file=sys.stderr,
                flush=True,
            )
        self.session_start, self.session_step0 = time.monotonic(), self.step

    def _resume_from(self, path: Path, state: dict) -> None:
        """Load checkpoint `state` (read from `path` on the CPU: RNG states are host data, and the weights and
        optimizer state are copied to their parameters' device as they load) after checking that it belongs to
        this model config, warning about other changes."""
        run_folder.check_model_config(state.get("model_config") or {}, self.config["model"], path)
        run_folder.warn_if_train_config_changed(state["train_config"], asdict(self.cfg), path)
        saved_world = int(state.get("world_size", len(state["rng"])))
        run_folder.warn_if_world_changed(saved_world, self.world, self.cfg.batch_size, path)
        self._load(state, path)
        self.saved_step = self.step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.logger is not None:
            self.logger.close()
        if self.lock is not None:
            self.lock.release()

    # --- loads ---------------------------------------------------------------------------------------
    def draw_missing_grid(self) -> None:
        """A session that trained no step (a run loaded again) draws the grid of its weights if a kill between
        the checkpoint and the grid left it out."""
        grid = self.folder / "samples" / f"step_{self.step:07d}.png"
        if self.step > 0 and self.step == self.session_step0 and not grid.exists():
            self._save_samples()

    def result(self) -> TrainResult:
        seconds = self.wall_before + time.monotonic() - self.session_start
        images = self.step * self.cfg.batch_size * self.world  # all sessions': a loaded run reports it too
        return TrainResult(
            self.model,
            self.ema.model,
            self.step,
            seconds,
            images / max(seconds, 1e-9),
            self.n_skipped,
            self.folder,
            self.precision.amp,
        )

    @property
    def n_updates(self) -> int:
        """Applied updates so far (a host read of the device counter: for records, interrupts and results)."""
        return self.counts.read()["n_updates"]

    @property
    def n_skipped(self) -> int:
        """Skipped non-finite updates so far (a host read of the device counter)."""
        return self.counts.read()["n_skipped"]

    # --- the loop ---------------------------------------------------------------------------------
    def run(self, end: int) -> None:
        """Steps until `end`. Records and the streak check fall on fixed steps (multiples of log_every, the last
        step, multiples of ckpt_every), never on a session's end, so an interruption changes neither."""
        self.model.train()
        self.bar = tqdm(
            total=self.cfg.steps,
            initial=self.step,
            disable=not self.is_main,
            desc=self.folder.name,
            unit="step",
            dynamic_ncols=True,
            mininterval=2.0,  # a saved notebook keeps every update of the bar: one each 2 s, not 10 a second
        )
        while self.step < end:
            lr = self.train_step()  # one update, no host-device sync
            if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
                self._log(lr)  # a record; raises after too many bad steps
                if self._out_of_time():
                    end = self.step
            if self.cfg.sample_every and self.step % self.cfg.sample_every == 0 and self.step < end:
                self._save_samples()  # the end's grid is drawn once, after the loop
            if self.step % self.cfg.ckpt_every == 0:
                self._check_streak()
            if self.step % self.cfg.ckpt_every == 0 or self.step == end:
                self.checkpoint()
            stop_if_asked(self)  # SIGINT/SIGTERM: checkpoint this step, stop
        self.bar.update(self.step - self.bar.n)
        if self.step > self.session_step0:
            self._save_samples()  # the grid of this session's final weights

    def train_step(self) -> float:
        """One step: batch, schedule, forward, backward, guarded update, counters; returns the learning rate.
        The step count moves last, so an interruption inside the step leaves counters that disagree with it
        only once the update is applied (interrupts checks n_updates + n_skipped == step)."""
        x = self.batches.batch(self.step)  # this rank's shard of the global batch
        lr = self._set_lr()  # warm-up / cosine schedule
        x = speed.batch_format(x, self.channels_last)
        # model.loss under autocast, then gradients, clipping and finiteness (on the device); eager again if compiling
        # fails on this step (compilation is lazy: a missing compiler shows only now)
        loss, stats, grad_norm, finite = self.compiled.run(
            lambda: self._forward_backward(x), self._undo_forward
        )
        self._update(finite)  # optimizer + EMA where finite, else a counted skip
        self.counts.add(finite, self.step + 1)  # steps are numbered like checkpoints (1-based)
        self.window.add(loss, stats, grad_norm, finite)
        self.step += 1
        return lr

    def _set_lr(self) -> float:
        lr = lr_at(self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _forward_backward(self, x):
        loss, stats = self._forward(x)
        return (loss, stats, *self._backward(loss))

    def _forward(self, x):
        self.bn_state.save()
        with accelerator.autocast(self.precision, self.device):
            loss, stats = self.objective(x, self.step)
        return loss.float(), stats

    def _undo_forward(self) -> None:
        """Put back the BatchNorm statistics a failed forward pass changed (the gradients are reset anyway)."""
        self.bn_state.keep_if(torch.zeros((), dtype=torch.bool, device=self.device))

    def _backward(self, loss) -> tuple[torch.Tensor, torch.Tensor]:
        """(grad_norm, finite): the norm before clipping and a 0-dim bool tensor, both left on the device."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        finite = torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)
        if self.world > 1:
            # a rank's own loss can be non-finite while the averaged gradients are not: all ranks must skip or
            # step together, or their weights drift apart; MIN makes one bad rank count for all
            finite = finite.to(torch.int32)
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
            finite = finite.bool()
        return grad_norm.detach(), finite

    def _update(self, finite: torch.Tensor) -> None:
        """Apply the update where finite; else weights, optimizer state, BN statistics and EMA stay as they were."""
        self.guard.step(finite)  # the scaler's own skip is covered by `finite`
        self.bn_state.keep_if(finite)  # undo a bad forward pass's BN updates
        self.ema.update(self.model, self.counts.n_updates, applied=finite)
        self.scaler.update()

    def _check_streak(self) -> None:
        """Raise when a streak of non-finite updates reached max_bad_steps (one host read)."""
        counts = self.counts.read()
        if counts["bad_streak_end"]:  # only checkpoints with finite weights are written: the newest is good
            kept = ckpt.list_checkpoints(self.folder)
            raise NonFiniteError(non_finite_message(counts, self.cfg, self.step, kept[-1] if kept else None))

    def _out_of_time(self) -> bool:
        """True when cfg.max_minutes has passed (agreed across ranks, so all stop at the same step)."""
        if not self.cfg.max_minutes:
            return False
        late = torch.tensor(float(time.monotonic() - self.session_start > 60 * self.cfg.max_minutes))
        if self.world > 1:
            late = late.to(self.device)
            dist.all_reduce(late, op=dist.ReduceOp.MAX)
        return bool(late.item())

    # --- records ----------------------------------------------------------------------------------
    def _log(self, lr: float) -> None:
        """Write the window's record, start a new window, then check the streak of non-finite updates."""
        record = self.window.summary(self.cfg.batch_size * self.world)
        record.update(
            step=self.step, lr=lr, skipped=self.n_skipped, epoch=self.step / self.batches.steps_per_epoch
        )
        self.window = Window()
        if self.is_main:
            self.logger.log(record)
            self.bar.update(self.step - self.bar.n)
            self.bar.set_postfix(loss=f"{record['loss']:.4g}", img_s=f"{record['img_per_s']:.0f}")
        self._check_streak()

    @torch.no_grad()
    def _save_samples(self) -> None:
        """A grid from the EMA weights. Its own fixed seed makes grids of different steps comparable and leaves
        the training RNG as it was, so a run stopped at a grid step resumes exactly (only rank 0 draws)."""
        if not self.is_main or self.cfg.n_samples == 0:
            return
        with ckpt.isolated_rng(self.cfg.seed, self.device):
            images = self.ema.model.sample(self.cfg.n_samples).float().clamp(0, 1)
        path = self.folder / "samples" / f"step_{self.step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(images.cpu(), path, nrow=int(math.ceil(math.sqrt(self.cfg.n_samples))))

    def checkpoint(self) -> bool:
        """Every rank contributes its RNG state; rank 0 writes the checkpoint atomically, unless the weights are
        non-finite (an exploding update): then none is written, so the newest checkpoint stays a good one. Returns
        whether this step's checkpoint exists now (every rank checks its own weights, which DDP keeps equal)."""
        rng = ckpt.capture_rng()
        if self.world > 1:
            gathered = [None] * self.world
            dist.all_gather_object(gathered, rng)
            rng = gathered
        else:
            rng = [rng]
        model, ema = self.model.state_dict(), self.ema.model.state_dict()
        if not all_finite([*model.values(), *ema.values()]):
            if self.is_main:
                warnings.warn(
                    f"step {self.step}: the weights are not finite (an exploding update?); no checkpoint "
                    f"written, the newest one in {self.folder} is kept",
                    stacklevel=2,
                )
            return False
        if self.is_main:
            state = {
                "step": self.step,
                "model": model,
                "ema": ema,
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng,
                "train_config": asdict(self.cfg),
                "model_config": self.config["model"],
                **self.counts.read(),
                "window": self.window.state(),
                "world_size": self.world,
                "wall_seconds": self.wall_before + time.monotonic() - self.session_start,
            }
            ckpt.save_checkpoint(self.folder, state, keep=self.cfg.keep_ckpts)
        self.saved_step = self.step
        return True

    def _load(self, state: dict, path: Path) -> None:
        ckpt.load_weights(self.model, state["model"], path)
        ckpt.load_weights(self.ema.model, state["ema"], path)
        speed.load_optimizer_state(self.optimizer, state["optimizer"])
        self.guard.reset_state_snapshot()
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.wall_before = int(state["step"]), float(state["wall_seconds"])
        self.counts.load(state)
        self.window = Window.from_state(state.get("window"), self.device)
        rngs = state["rng"]
        ckpt.restore_rng(rngs[self.rank] if self.rank < len(rngs) else rngs[0])
