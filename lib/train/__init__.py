"""The one training loop every family shares, and its guards.

    config       TrainConfig (every field with its meaning) and lr_at, the warm-up / cosine schedule
    loop         train(): the loop as small named steps, TrainResult, NonFiniteError
    checkpoints  atomic checkpoints and RNG state; a damaged newest one is moved aside on resume
    run_folder   run names, one process per run folder (a lock), fresh starts moved aside, config checks on resume
    distributed  torchrun's rank, local rank and world size, each rank on its own GPU, the process group
    interrupts   SIGTERM / Ctrl-C: checkpoint the current step, then stop
    skipping     non-finite updates skipped on the device (fused found_inf, or a flat snapshot put back), the
                 error after too many in a row
    log_window   the log window's device-side sums and what a checkpoint keeps of them
    ema          the EMA of the weights that sampling and evaluation use
    speed        fused optimizer, channels-last (per net), compile (and its eager fallback), cuDNN autotuning and
                 TF32 (for training only)
    logger       metrics.jsonl, mirrored to wandb
    cli          `python -m lib.train MODEL --key value ...`

Importing `lib.train` (or `lib.train.config`) loads only the config; `train`, `TrainResult` and
`NonFiniteError` load the loop (DistributedDataParallel, the run lock, the signal handlers) on first use, so a
model module that needs its presets' TrainConfig never pulls them in.
"""

from __future__ import annotations

import importlib

from .config import TrainConfig, lr_at

_FROM_LOOP = ("train", "TrainResult", "NonFiniteError", "distributed_context")

__all__ = ["TrainConfig", "lr_at", *_FROM_LOOP]


def __getattr__(name: str):
    if name in _FROM_LOOP:
        return getattr(importlib.import_module(".loop", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
