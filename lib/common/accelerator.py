"""What the device can do, decided in one place: whether it has native bf16, the precision `amp="auto"` picks
(training, and the NCSN sampler's "auto"), whether an exception is a torch.compile toolchain failure to fall back
from, and how much memory is free.

The `auto` precision rule:
- CUDA: bf16 where the GPU has bf16 tensor cores (compute capability >= 8.0, Ampere and later); below that (a T4,
  7.5) fp16 with the GradScaler: there torch.cuda.is_bf16_supported() is True only by emulation and cuDNN runs
  no bf16 convolutions.
- CPU: bf16 where the CPU computes bf16 natively (AMX tiles or AVX-512 BF16, as torch's CPU capability reports
  them; oneDNN then runs bf16 convolutions and matmuls in hardware), fp32 elsewhere.
- any other device (MPS): fp32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

AMP_CHOICES = ("auto", "bf16", "fp16", "off")
# probes of torch's CPU capability, newest name first; older torch builds lack some of them (then: not native)
_CPU_BF16_PROBES = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has AMX tiles or AVX-512 BF16 (torch's own CPU capability probes)."""
    for name in _CPU_BF16_PROBES:
        for owner in (getattr(torch, "cpu", None), getattr(torch._C, "_cpu", None)):
            probe = getattr(owner, name, None)
            if probe is None:
                continue
            try:
                if probe():
                    return True
            except RuntimeError:  # a build without the probe's backend
                pass
            break
    return False


def cuda_has_native_bf16(device: torch.device | str | None = None) -> bool:
    """Whether the GPU has bf16 tensor cores: compute capability 8.0 or later."""
    return torch.cuda.get_device_capability(device)[0] >= 8


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` computes bf16 in hardware (CUDA: capability >= 8; CPU: AMX or AVX-512 BF16)."""
    device = torch.device(device)
    if device.type == "cuda":
        return cuda_has_native_bf16(device)
    return device.type == "cpu" and cpu_has_native_bf16()


@dataclass(frozen=True)
class Precision:
    """The precision a run uses: amp is bf16 | fp16 | off; `why` says how it was chosen (for the run's line)."""

    amp: str
    why: str

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)

    @property
    def grad_scaler(self) -> bool:
        """fp16 on CUDA needs loss scaling (its range underflows small gradients); bf16 has fp32's range."""
        return self.amp == "fp16"

    def describe(self) -> str:
        name = {"bf16": "bf16 autocast", "fp16": "fp16 autocast + GradScaler", "off": "fp32"}[self.amp]
        return f"{name} ({self.why})"


def resolve_amp(amp: str, device: torch.device | str) -> Precision:
    """The precision for TrainConfig.amp on `device`: an explicit choice as given, `auto` by the module's rule."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {list(AMP_CHOICES)}, got {amp!r}")
    device = torch.device(device)
    if amp != "auto":
        return Precision(amp, "set explicitly")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major >= 8:
            return Precision("bf16", f"auto: compute capability {major}.{minor} has bf16 tensor cores")
        return Precision("fp16", f"auto: compute capability {major}.{minor} has no bf16 tensor cores")
    if device.type == "cpu":
        if cpu_has_native_bf16():
            return Precision("bf16", "auto: this CPU has native bf16, AMX or AVX-512 BF16")
        return Precision("off", "auto: this CPU has no native bf16")
    return Precision("off", f"auto: fp32 on {device.type}")


def autocast(precision: Precision | str, device: torch.device | str):
    """The autocast context for a Precision (or an amp string, resolved for `device`); fp32 is no context."""
    device = torch.device(device)
    precision = precision if isinstance(precision, Precision) else resolve_amp(precision, device)
    if precision.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=precision.dtype)


def is_compile_failure(err: BaseException) -> bool:
    """Whether `err` came out of torch.compile's machinery (dynamo, AOTAutograd, Inductor, Triton): a missing C++
    compiler, no working Triton, a GPU Triton does not support, an unsupported torch. Compilation is lazy, so
    these surface at the first call of a compiled function, not at torch.compile."""
    try:
        from torch._dynamo.exc import TorchDynamoException
    except ImportError:  # a torch without dynamo compiles nothing
        return False
    module = type(err).__module__ or ""
    return isinstance(err, TorchDynamoException) or module.startswith(("torch._inductor", "triton"))


def compile_fallback_message(what: str, err: BaseException, option: str) -> str:
    """One line for a compile failure that the caller survives by running `what` eagerly."""
    first = (str(err).strip().splitlines() or [""])[0][:300]
    return (
        f"torch.compile failed for {what} ({type(err).__name__}: {first}); running it eagerly instead (same "
        f"results, slower). Usual causes: no C++ compiler (CPU), no working Triton or a GPU it does not support "
        f"(CUDA), an unsupported torch. To skip compiling, set {option}."
    )


def free_memory_bytes(device: torch.device | str) -> int | None:
    """Bytes a new allocation can use on `device`: CUDA's free memory plus what torch's allocator holds unused;
    None where it is not known (CPU, MPS)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
