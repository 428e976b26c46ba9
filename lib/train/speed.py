"""The training loop's speed options, in one place so every family and the benchmark get them the same way:
the optimizer's implementation (fused / foreach), channels-last memory format, cuDNN autotuning, TF32, and
torch.compile of the networks (optionally with CUDA graphs). `TrainConfig` (lib.train.config) holds the switches; each
"auto" means on for CUDA and off elsewhere (channels-last: on CUDA for the networks that gain from it).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from ..common.accelerator import compile_fallback_message, is_compile_failure
from . import checkpoints as ckpt
from .config import FUSED

T = TypeVar("T")

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adamax": torch.optim.Adamax}


def is_on(switch: str, device: torch.device) -> bool:
    """An auto | on | off switch for `device`: auto is on for CUDA only."""
    return switch == "on" or (switch == "auto" and device.type == "cuda")


@contextlib.contextmanager
def backend_flags(cfg, device: torch.device):
    """cuDNN autotuning and TF32 as switched (CUDA only), for the block only: they are process-wide settings, and
    TF32 left on reaches everything after training in the same process (torch.cdist's matmul in the nearest-
    neighbour and precision/recall distances, whose inputs TF32 rounds to a 10-bit mantissa). Whatever the block does to them, they
    are put back as they were. Matmuls go through torch.set_float32_matmul_precision and convolutions through
    cudnn.conv.fp32_precision (cudnn.allow_tf32 on a torch without it): the legacy matmul flag after
    set_float32_matmul_precision makes torch.get_float32_matmul_precision() raise (torch 2.14)."""
    saved = _read_flags()
    try:
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = is_on(cfg.cudnn_benchmark, device)
            tf32 = is_on(cfg.tf32, device)
            torch.set_float32_matmul_precision("high" if tf32 else "highest")
            _set_conv_tf32(tf32)
        yield
    finally:
        _write_flags(saved)


def _conv_api():
    """The per-backend precision object for cuDNN convolutions (torch 2.14 has it), or None on a torch without."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    return conv if conv is not None and hasattr(conv, "fp32_precision") else None


def _set_conv_tf32(on: bool) -> None:
    if _conv_api() is not None:
        _conv_api().fp32_precision = "tf32" if on else "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = on


def _read_flags() -> dict:
    conv = _conv_api()
    flags = {"benchmark": torch.backends.cudnn.benchmark}
    flags["conv"] = conv.fp32_precision if conv is not None else torch.backends.cudnn.allow_tf32
    try:
        flags["matmul"] = torch.get_float32_matmul_precision()
    except (
        RuntimeError
    ):  # the caller mixed the legacy and the new API: keep the per-backend values as they are
        backends = (torch.backends.cuda.matmul, torch.backends.mkldnn.matmul)
        flags["matmul_backends"] = [(b, b.fp32_precision) for b in backends if hasattr(b, "fp32_precision")]
    return flags


def _write_flags(flags: dict) -> None:
    torch.backends.cudnn.benchmark = flags["benchmark"]
    if _conv_api() is not None:
        _conv_api().fp32_precision = flags["conv"]
    else:
        torch.backends.cudnn.allow_tf32 = flags["conv"]
    if "matmul" in flags:
        torch.set_float32_matmul_precision(flags["matmul"])
    for backend, value in flags.get("matmul_backends", []):
        backend.fp32_precision = value


def make_optimizer(cfg, params, device: torch.device) -> tuple[torch.optim.Optimizer, bool]:
    """(optimizer, fused). Fused Adam/AdamW where switched on; otherwise torch's default implementation, made
    `capturable` on CUDA so its step counts live on the device (the on-device skip restores them without a sync)."""
    fused = cfg.optimizer in FUSED and is_on(cfg.fused_optimizer, device)
    options = dict(lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay)
    if fused:
        options["fused"] = True
    elif device.type == "cuda":
        options.update(foreach=True, capturable=True)
    return OPTIMIZERS[cfg.optimizer](params, **options), fused


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load a checkpoint's optimizer state under this run's implementation: the saved groups' fused / foreach /
    capturable flags would otherwise win (torch restores them), e.g. a fused run resumed from a non-fused one would
    hand found_inf to a kernel that rejects it, and step counts would land on the wrong device."""
    flags = ("fused", "foreach", "capturable")
    groups = [
        {**saved_group, **{k: group[k] for k in flags if k in group}}
        for saved_group, group in zip(saved["param_groups"], optimizer.param_groups)
    ]
    optimizer.load_state_dict({**saved, "param_groups": groups})


def channels_last_on(model: nn.Module, cfg, device: torch.device) -> bool:
    """cfg.channels_last "on" / "off" as given; "auto": on CUDA unless a network of the model says channels-last
    does not pay for it (a module attribute `channels_last_auto = False`, set from measurements: lib.nets.ncsn),
    off elsewhere."""
    if cfg.channels_last != "auto":
        return cfg.channels_last == "on"
    return device.type == "cuda" and all(getattr(m, "channels_last_auto", True) for m in model.modules())


def to_memory_format(model: nn.Module, on: bool) -> nn.Module:
    """The model in channels-last format when `on` (4-D weights only; the rest is unchanged)."""
    return model.to(memory_format=torch.channels_last) if on else model


def batch_format(x: torch.Tensor, on: bool) -> torch.Tensor:
    """A batch in the model's memory format."""
    return x.contiguous(memory_format=torch.channels_last) if on else x


def compile_networks(model: nn.Module, cfg, device: torch.device) -> list[str]:
    """torch.compile, in place, of every child module of `model` that holds parameters (its networks) when
    cfg.compile; returns their names. The loss's own arithmetic stays eager: it reads the step in Python (KL
    warm-up, capacity schedules), which dynamo would have to guard on, or trip over, at every step. In place
    (nn.Module.compile) keeps the state_dict keys, so checkpoints do not depend on the setting. reduce-overhead
    (CUDA graphs, for launch-bound steps such as NVAE's) needs CUDA."""
    if not cfg.compile:
        return []
    if cfg.compile_mode == "reduce-overhead" and device.type != "cuda":
        raise ValueError(
            f"TrainConfig.compile_mode='reduce-overhead' captures CUDA graphs and needs a CUDA device, "
            f"not {device.type}; use compile_mode='default' here"
        )
    mode = None if cfg.compile_mode == "default" else cfg.compile_mode
    names = [name for name, child in model.named_children() if any(True for _ in child.parameters())]
    for name in names:
        getattr(model, name).compile(mode=mode)
    return names


class CompiledNetworks:
    """The model's compiled networks and the fallback to eager when compiling fails. Compilation is lazy, so a
    missing C++ compiler or an unusable Triton raises at the first step (forward or backward), not here: `run`
    then undoes what the failed attempt changed, runs the networks eagerly from then on, warns once and redoes
    the step. Until a compiled step has succeeded, the RNG state before it is kept, so the redone step draws what
    an eager run draws. `failure` keeps the message (the benchmark records it)."""

    def __init__(self, model: nn.Module, cfg, device: torch.device):
        self.model, self.names = model, compile_networks(model, cfg, device)
        self.failure: str | None = None
        self._proven = False  # a compiled step has run: later steps need no RNG copy

    def run(self, step: Callable[[], T], undo: Callable[[], None]) -> T:
        """step(), or, when it fails inside torch.compile, undo() and step() again uncompiled."""
        rng = ckpt.capture_rng() if self.names and not self._proven else None
        try:
            out = step()
            self._proven = True
            return out
        except Exception as err:
            if not self.names or not is_compile_failure(err):
                raise
            self._fall_back(err)
        undo()
        if rng is not None:
            ckpt.restore_rng(rng)
        return step()

    def _fall_back(self, err: Exception) -> None:
        self.failure = compile_fallback_message(
            f"the networks {self.names}", err, "TrainConfig(compile=False) (CLI: --compile false)"
        )
        warnings.warn(self.failure, stacklevel=4)
        for name in self.names:
            getattr(self.model, name)._compiled_call_impl = None  # nn.Module.compile's hook: back to eager
        self.names = []
