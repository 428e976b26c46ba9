"""The speed switches of a Langevin chain, kept apart from the algorithm (lib.samplers): which precision and
whether to compile (`sampler_speed`), the score under bf16 autocast (`autocast_score`), and the Langevin step
under torch.compile with an eager fallback (`compiled_step`). lib.models.ncsn wires them into NCSN.sample.

The "auto" rule: bf16 where the device computes it natively (lib.common.accelerator.native_bf16), compiled
on CUDA only (Inductor's CPU build of a score net takes minutes, longer than a smoke-size chain runs). A
compile that fails (lazily, at the first call) runs the rest of the chain eagerly, with one warning a process.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch

from .accelerator import compile_fallback_message, is_compile_failure, native_bf16

PRECISIONS = ("fp32", "bf16")
_COMPILE_FAILURE: list[str | None] = [None]  # the message of this process's failed compile (then: eager only)


def sampler_speed(device: torch.device | str, precision: str = "auto", compile: bool | str = "auto"):
    """(precision, compile) for a Langevin chain on `device`, with "auto" resolved by the module's rule."""
    device = torch.device(device)
    if precision == "auto":
        precision = "bf16" if native_bf16(device) else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'auto' or one of {list(PRECISIONS)}, got {precision!r}")
    if compile == "auto":
        compile = device.type == "cuda"
    if not isinstance(compile, bool):
        raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")
    return precision, compile


def autocast_score(score: Callable, device_type: str, precision: str = "fp32") -> Callable:
    """`score` under bf16 autocast (its output back in fp32, so the chain itself stays fp32), or as is."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return score

    def bf16_score(x, level):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return score(x, level).float()

    return bf16_score


@functools.cache
def _compiled(step: Callable) -> Callable:
    """`step` under torch.compile, created once per process (dynamo then caches a graph per score net)."""
    return torch.compile(step)


def compiled_step(step: Callable) -> Callable:
    """lib.samplers.langevin_step (or a `step` of its arguments) as one compiled function: level and alpha
    enter as tensors, so one graph serves every level; the noise is still drawn eagerly, in the same order.
    When compiling fails, this call and every later one run `step` eagerly, after one warning per process."""

    def fast_step(score, x, level, alpha, noise):
        if _COMPILE_FAILURE[0] is None:
            level_ids = torch.full((x.shape[0],), level, device=x.device)  # fill kernels: no host copy
            alpha_t = torch.full((), alpha, dtype=x.dtype, device=x.device)
            try:
                return _compiled(step)(score, x, level_ids, alpha_t, noise)
            except Exception as err:
                if not is_compile_failure(err):
                    raise
                message = compile_fallback_message("the Langevin step", err, "compile=False in sample()")
                _COMPILE_FAILURE[0] = message
                warnings.warn(message, stacklevel=2)
        return step(score, x, level, alpha, noise)

    return fast_step
