"""The training configuration every family's presets use: `TrainConfig` and its learning-rate schedule.

Kept apart from the loop so that a model module imports its presets' config without pulling in the loop,
DistributedDataParallel, the run lock or the signal handlers (lib.models imports only this module of lib.train).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..common.checks import check_field_types

OPTIMIZER_NAMES = ("adam", "adamw", "adamax")
FUSED = ("adam", "adamw")  # optimizers with a fused kernel that accepts found_inf (the on-device skip)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 10_000  # total optimizer steps; the LR schedule spans them
    max_minutes: float = 0.0  # stop early (with a checkpoint) after this much wall time; 0 = no limit
    batch_size: int = 128  # images per step and process (DDP: the global batch is world_size times it)
    lr: float = 2e-4  # peak learning rate
    optimizer: str = "adam"  # adam | adamw | adamax
    adam_beta1: float = 0.9  # Adam's beta_1
    adam_beta2: float = 0.999  # Adam's beta_2
    weight_decay: float = 0.0  # decoupled for adamw, L2 otherwise
    warmup_steps: int = 0  # linear LR warm-up from 0
    schedule: str = "constant"  # after warm-up: constant | cosine
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    grad_clip: float = 1.0  # max global gradient norm; 0 = no clipping
    ema_decay: float = 0.999  # EMA of weights; ramps as min(decay, (1+t)/(10+t)) when ema_warmup
    ema_warmup: bool = True  # ramp the EMA decay so short runs are not stuck near the initial weights
    amp: str = "auto"  # auto (bf16 where native: CUDA >= 8.0, AMX/AVX-512 BF16 CPUs; older GPUs fp16) | bf16 | fp16 | off
    max_bad_steps: int = 20  # non-finite updates in a row before the run stops with an error
    flip: bool = True  # random horizontal flips of training images
    seed: int = 0  # seeds the data order, flips and the loop's RNG
    log_every: int = 50  # steps between metrics records (and bar updates)
    sample_every: int = 0  # steps between sample grids; 0 = only at the end
    n_samples: int = 64  # images per sample grid; 0 = no grids
    ckpt_every: int = 1000  # steps between checkpoints (one is always written at the end)
    keep_ckpts: int = 2  # checkpoints kept; older ones are deleted after a new one is written
    # speed (each "auto" is on for CUDA and off elsewhere, so CPU runs behave as before these options existed)
    compile: bool = False  # torch.compile the model's networks (its child modules with parameters)
    compile_mode: str = (
        "default"  # default | reduce-overhead (CUDA graphs; CUDA only) | max-autotune[-no-cudagraphs]
    )
    channels_last: str = (
        "auto"  # auto | on | off: NHWC weights and batches (auto: on CUDA for nets that gain, lib.nets)
    )
    fused_optimizer: str = (
        "auto"  # auto | on | off: fused Adam/AdamW kernel (adamax has none: "foreach" instead)
    )
    cudnn_benchmark: str = (
        "auto"  # auto | on | off: let cuDNN pick the fastest convolution algorithms (CUDA only)
    )
    tf32: str = "auto"  # auto | on | off: TF32 tensor cores for the fp32 matmuls/convolutions (CUDA only)

    def __post_init__(self):
        check_field_types(self)
        positive = ("steps", "batch_size", "log_every", "ckpt_every", "keep_ckpts", "max_bad_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "lr",
            "max_minutes",
            "weight_decay",
            "warmup_steps",
            "grad_clip",
            "min_lr_ratio",
            "sample_every",
            "n_samples",
            "seed",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        switch = ("auto", "on", "off")
        choices = {
            "optimizer": OPTIMIZER_NAMES,
            "schedule": ("constant", "cosine"),
            "amp": ("auto", "bf16", "fp16", "off"),
            "compile_mode": COMPILE_MODES,
            "channels_last": switch,
            "fused_optimizer": switch,
            "cudnn_benchmark": switch,
            "tf32": switch,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"TrainConfig.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}"
                )
        for name in ("ema_decay", "adam_beta1", "adam_beta2"):
            if not (0.0 <= getattr(self, name) < 1.0):
                raise ValueError(f"TrainConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.min_lr_ratio > 1.0:
            raise ValueError(
                f"TrainConfig.min_lr_ratio must be in [0, 1] (the cosine floor as a fraction of lr), "
                f"got {self.min_lr_ratio}"
            )
        if self.fused_optimizer == "on" and self.optimizer not in FUSED:
            raise ValueError(
                f"TrainConfig.fused_optimizer='on' needs optimizer in {list(FUSED)} (torch has no fused "
                f"{self.optimizer}); use 'auto', which runs it as a multi-tensor 'foreach' step"
            )


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at `step`: linear warm-up to cfg.lr, then constant or cosine down to lr * min_lr_ratio."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
