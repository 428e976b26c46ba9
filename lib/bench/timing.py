"""Timing the real code: the training loop's own step (lib.train.loop's `_Loop.train_step`: forward, backward, guarded
update, EMA, counters, log sums) and each family's own sampler, in a "plain" (fp32, eager) or "fast" (autocast as amp="auto" picks it,
torch.compile, channels-last, fused optimizer, cuDNN autotuning, TF32) mode."""

from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import replace

import torch

from ..common.accelerator import autocast
from ..train.config import TrainConfig
from ..train.loop import _Loop
from ..train.speed import FUSED, backend_flags
from .flops import peak_memory_mb, reset_peak, sync

PLAIN = dict(
    amp="off", compile=False, channels_last="off", fused_optimizer="off", cudnn_benchmark="off", tf32="off"
)
FAST = dict(
    amp="auto", compile=True, channels_last="auto", fused_optimizer="on", cudnn_benchmark="auto", tf32="auto"
)
SYNC_STEPS = 2  # training steps under torch's sync debug mode (CUDA)
QUIET = dict(log_every=10**9, ckpt_every=10**9, n_samples=0, max_bad_steps=10**9)  # no records, files, stops


def mode_config(cfg: TrainConfig, mode: str, batch: int, compile: bool = True) -> TrainConfig:
    """The family's TrainConfig at `batch` with the mode's speed switches (fused only where torch has a kernel);
    "fast_eager" is "fast" without torch.compile."""
    switches = dict(PLAIN if mode == "plain" else FAST)
    if mode != "plain":
        switches["compile"] = compile and mode == "fast"
        switches["fused_optimizer"] = "on" if cfg.optimizer in FUSED else "auto"
    return replace(cfg, batch_size=batch, **QUIET, **switches)


def time_training(model, cfg: TrainConfig, device: torch.device, warmup: int, steps: int) -> dict:
    """Training img/s over `steps` loop steps after `warmup` (compilation happens there), peak memory, host syncs
    per step (CUDA: counted by torch.cuda.set_sync_debug_mode) and skipped updates. Every step stays inside one
    epoch: a new epoch copies its permutation and flips to the device (two blocking copies), which real training
    does once per epoch and a tiny image set would do every other step."""
    n_steps = warmup + SYNC_STEPS + steps + 1
    images = torch.randint(0, 256, (n_steps * cfg.batch_size, 3, 32, 32), dtype=torch.uint8)
    with tempfile.TemporaryDirectory() as folder, backend_flags(cfg, device):
        loop = _Loop(model.to(device), images, cfg, folder, device, 0, 1, {})
        loop.model.train()
        sync(device)
        warm = time.perf_counter()
        for _ in range(warmup):
            loop.train_step()
        sync(device)
        warmup_seconds = time.perf_counter() - warm
        syncs = count_host_syncs(loop, device)
        sync(device)
        reset_peak(device)
        graphs, start = _compiled_graphs(), time.perf_counter()
        for _ in range(steps):
            loop.train_step()
        sync(device)
        seconds = time.perf_counter() - start
        return {
            "precision": loop.precision.amp,  # what amp became on this device (fast: "auto")
            "channels_last": loop.channels_last,  # what channels_last became for this net and device
            "train_img_per_s": cfg.batch_size * steps / seconds,
            "train_seconds": seconds,
            # the untimed warm-up steps, compilation included: what compiling costs a run once, at its start
            "warmup_seconds": warmup_seconds,
            "graphs_compiled_while_timed": _compiled_graphs() - graphs,  # > 0: raise --warmup
            "peak_memory_train_mb": peak_memory_mb(device),
            **syncs,
            "skipped_updates": loop.counts.read()["n_skipped"],
            # set when torch.compile failed and the loop fell back to eager: then these are eager numbers
            "compile_failure": loop.compiled.failure,
        }


def _compiled_graphs() -> int:
    """Graphs torch.compile has produced in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def count_host_syncs(loop, device: torch.device, n_steps: int = SYNC_STEPS) -> dict:
    """Synchronising CUDA calls per training step (torch's sync debug mode warns on each), and the first one's
    message; None on other devices, where the loop's tests check the same on the CPU."""
    if device.type != "cuda":
        return {"host_syncs_per_step": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(n_steps):
                loop.train_step()
            sync(device)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    found = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
    return {"host_syncs_per_step": len(found) / n_steps, "first_sync": found[0][:300] if found else None}


@torch.no_grad()
def time_sampling(draw, device: torch.device, repeats: int) -> dict:
    """draw() -> network evaluations it made (images x evaluations); evaluations/s after one untimed warm-up call."""
    draw()
    sync(device)
    reset_peak(device)
    start, evaluations = time.perf_counter(), 0
    for _ in range(repeats):
        evaluations += draw()
    sync(device)
    seconds = time.perf_counter() - start
    return {
        "sample_evaluations_per_s": evaluations / seconds,
        "sample_seconds": seconds,
        "peak_memory_sample_mb": peak_memory_mb(device),
    }


def ncsn_draw(model, n: int, mode: str, compile: bool = True):
    """NCSN.sample itself, one Langevin step per level (+ the Tweedie step): L (+1) evaluations per image."""
    options = (
        dict(precision="auto", compile=compile and mode == "fast")
        if mode != "plain"
        else dict(precision="fp32", compile=False)
    )
    evaluations = model.cfg.n_sigmas + int(model.cfg.denoise)

    def draw() -> int:
        model.eval().sample(n, n_steps_each=1, **options)
        return n * evaluations

    return draw


def prior_draw(model, n: int, mode: str, device: torch.device):
    """model.sample(n) (one decoder / top-down pass per image) under the mode's autocast."""

    def draw() -> int:
        with autocast("off" if mode == "plain" else "auto", device):
            model.eval().sample(n)
        return n

    return draw


def iwae_eval_draw(
    model, x: torch.Tensor, mode: str, device: torch.device, k: int = 5000, k_chunk: int = 500
):
    """The k-sample bound of lib.metrics (the evaluation's own code) on x: counts images, not evaluations."""
    from ..metrics import importance_log_likelihood

    def draw() -> int:
        with autocast("off" if mode == "plain" else "auto", device):
            importance_log_likelihood(model.eval(), x, k=k, k_chunk=k_chunk)
        return len(x)

    return draw
