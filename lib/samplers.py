"""Image generation with a noise-conditional score: the noise ladder, annealed Langevin dynamics (Song & Ermon
2019, Algorithm 1), inpainting, and NCSNv2's rules for choosing the ladder (Song & Ermon 2020).

Symbols: `sigmas` the descending noise ladder sigma_1 > ... > sigma_L; `level` an index into it; `score(x, level)`
a callable returning s(x, sigma_level) shaped like x; `step_lr` the paper's epsilon; `n_steps_each` its T.
Algorithm 1 steps x <- x + alpha_i / 2 * s + sqrt(alpha_i) z with alpha_i = step_lr * sigma_i^2 / sigma_L^2.
(The NCSN and NCSNv2 code step x + alpha s + sqrt(2 alpha) z, so their step_lr is half of ours for the same chain.)
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable

import torch

from .common.accelerator import compile_fallback_message, is_compile_failure, native_bf16
from .data import to_float

Score = Callable[[torch.Tensor, int], torch.Tensor]
NoiseFn = Callable[[torch.Tensor], torch.Tensor]


def geometric_sigmas(sigma_max: float, sigma_min: float, n: int) -> torch.Tensor:
    """The descending geometric ladder sigma_1 = sigma_max, ..., sigma_L = sigma_min: (n,) float32."""
    if n < 1:
        raise ValueError(f"n (the number of levels L) must be >= 1, got {n}")
    if sigma_min <= 0:
        raise ValueError(f"sigma_min must be > 0 (the ladder is geometric), got {sigma_min}")
    if sigma_min >= sigma_max:  # the same rule as NCSNConfig: a ladder that does not descend anneals nothing
        raise ValueError(f"sigma_min must be < sigma_max, got sigma_min={sigma_min} >= sigma_max={sigma_max}")
    if n == 1:
        return torch.tensor([float(sigma_max)])
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), n, dtype=torch.float64).float()


def _check_chain(n_steps_each: int, step_lr: float) -> None:
    """Reject a chain that cannot run: T < 1 steps, or epsilon <= 0 (0 never moves; < 0 has no sqrt(alpha_i))."""
    if n_steps_each < 1:
        raise ValueError(f"n_steps_each (T, Langevin steps per level) must be >= 1, got {n_steps_each}")
    if step_lr <= 0:
        raise ValueError(f"step_lr (epsilon of Alg. 1) must be > 0, got {step_lr}")


def _langevin_level(
    score: Score,
    x,
    level: int,
    alpha: float,
    n_steps: int,
    noise_fn: NoiseFn,
    clamp_fn=None,
    keep_every: int = 0,
    trajectory: list | None = None,
    compile: bool = False,
):
    """T Langevin steps at one level; clamp_fn re-imposes constraints (inpainting) after every step. compile: run
    each step as one torch.compile'd function of tensors (the noise is still drawn eagerly, in the same order);
    when compiling fails (compilation is lazy: at the first call), the chain goes on eagerly with one warning."""
    step = compiled_langevin_step() if compile and _COMPILE_FAILURE[0] is None else None
    if step is not None:
        level_ids = torch.full((x.shape[0],), level, device=x.device)
        alpha_t = torch.full(
            (), alpha, dtype=x.dtype, device=x.device
        )  # fill kernels: no host-to-device copy
    for t in range(n_steps):
        if step is not None:
            noise = noise_fn(x)
            new = _compiled_or_none(step, score, x, level_ids, alpha_t, noise)
            if new is None:  # compiling failed: this step and the rest of the chain eagerly
                step, new = None, x + 0.5 * alpha * score(x, level) + math.sqrt(alpha) * noise
            x = new
        else:
            x = x + 0.5 * alpha * score(x, level) + math.sqrt(alpha) * noise_fn(x)  # Alg. 1, line 6
        x = clamp_fn(x) if clamp_fn is not None else x
        if trajectory is not None and keep_every and (t + 1) % keep_every == 0:
            trajectory.append(x.detach().cpu())
    return x


_COMPILE_FAILURE: list[str | None] = [None]  # the message of this process's failed compile (then: eager only)


def _compiled_or_none(step, score, x, level_ids, alpha_t, noise):
    """The compiled step's result, or None (with one warning per process) when compiling it fails."""
    try:
        return step(score, x, level_ids, alpha_t, noise)
    except Exception as err:
        if not is_compile_failure(err):
            raise
        _COMPILE_FAILURE[0] = compile_fallback_message("the Langevin step", err, "compile=False in sample()")
        warnings.warn(_COMPILE_FAILURE[0], stacklevel=4)
        return None


def langevin_step(
    score: Score, x: torch.Tensor, level: torch.Tensor, alpha: torch.Tensor, noise: torch.Tensor
):
    """Alg. 1, line 6 with level (B,) long and alpha 0-dim as tensors, so one compiled graph serves every level."""
    return x + 0.5 * alpha * score(x, level) + alpha.sqrt() * noise


@functools.cache
def compiled_langevin_step():
    """langevin_step under torch.compile, created once per process (dynamo then caches a graph per score net)."""
    return torch.compile(langevin_step)


PRECISIONS = ("fp32", "bf16")


def sampler_speed(device: torch.device | str, precision: str = "auto", compile: bool | str = "auto"):
    """(precision, compile) for a Langevin chain on `device`. precision "auto": bf16 where the device computes it
    natively (lib.common.accelerator.native_bf16: CUDA capability >= 8, AMX / AVX-512 BF16 CPUs), else fp32.
    compile "auto": on CUDA only (Inductor's CPU build of a score net takes minutes, longer than a smoke-size
    chain runs); a compile that fails falls back to eager."""
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


def autocast_score(score: Score, device_type: str, precision: str = "fp32") -> Score:
    """`score` evaluated under bf16 autocast (its output back in fp32, so the chain itself stays fp32), or as is."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return score

    def bf16_score(x, level):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return score(x, level).float()

    return bf16_score


@torch.no_grad()
def annealed_langevin(
    score: Score,
    x: torch.Tensor,
    sigmas,
    n_steps_each: int = 100,
    step_lr: float = 2e-5,
    denoise: bool = True,
    return_trajectory: bool = False,
    keep_every: int | None = None,
    noise_fn: NoiseFn | None = None,
    compile: bool = False,
):
    """Annealed Langevin dynamics (Alg. 1) from x (B, ...); returns x, or (x, trajectory) on request.

    denoise: finish with the Tweedie step x + sigma_L^2 s(x, L) (NCSNv2 Appendix), which removes the last
    level's noise. trajectory: a list of CPU snapshots, the start and every `keep_every` steps (default: the
    end of each level), then the denoised result. noise_fn(x) draws the injected noise (default N(0, I)).
    compile: each step as one compiled function (langevin_step); `score` must then accept level as a (B,) tensor.
    """
    _check_chain(n_steps_each, step_lr)
    sigmas = [float(s) for s in sigmas]
    noise_fn = noise_fn or torch.randn_like
    keep_every = keep_every or n_steps_each
    trajectory = [x.detach().cpu()] if return_trajectory else None
    for level, sigma in enumerate(sigmas):
        alpha = step_lr * (sigma / sigmas[-1]) ** 2  # alpha_i = eps * sigma_i^2 / sigma_L^2
        x = _langevin_level(
            score, x, level, alpha, n_steps_each, noise_fn, None, keep_every, trajectory, compile
        )
    if denoise:
        x = x + sigmas[-1] ** 2 * score(
            x, len(sigmas) - 1
        )  # Tweedie: E[x_0 | x] under the sigma_L perturbation
        if trajectory is not None:
            trajectory.append(x.detach().cpu())
    return (x, trajectory) if return_trajectory else x


@torch.no_grad()
def annealed_langevin_inpaint(
    score: Score,
    x_known: torch.Tensor,
    mask: torch.Tensor,
    sigmas,
    n_steps_each: int = 100,
    step_lr: float = 2e-5,
    denoise: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill the pixels where mask == 0 (Song & Ermon 2019, Appendix B.3, Alg. 2). x_known, mask: (B, C, H, W).

    At level i the known pixels are held at x_known + sigma_i z (one draw per level) after every step, so the
    chain sees a consistently perturbed image; the result carries the known pixels exactly.
    """
    _check_chain(n_steps_each, step_lr)
    sigmas = [float(s) for s in sigmas]
    known = mask.bool().expand_as(x_known)
    mask = known.to(x_known.dtype)
    x = torch.rand(x_known.shape, generator=generator, device=x_known.device if generator is None else "cpu")
    x = x.to(x_known.device)
    for level, sigma in enumerate(sigmas):
        known_noisy = x_known + sigma * torch.randn_like(x_known)  # Alg. 2: y~ = y + sigma_i z
        keep = lambda v, y=known_noisy: mask * y + (1 - mask) * v  # the per-level constraint
        alpha = step_lr * (sigma / sigmas[-1]) ** 2
        x = _langevin_level(score, keep(x), level, alpha, n_steps_each, torch.randn_like, keep)
    if denoise:
        x = x + sigmas[-1] ** 2 * score(x, len(sigmas) - 1)
    return torch.where(known, x_known, x)  # known pixels exactly as given (where: immune to inf * 0)


# --- NCSNv2's techniques for the noise ladder and the sampler (Song & Ermon 2020) -----------------------


@torch.no_grad()
def largest_pairwise_distance(x, chunk: int = 2048, device=None) -> float:
    """Technique 1: sigma_1 = max_{i,j} ||x_i - x_j||_2 over images x (N, ...) (uint8 read as k / 255, or [0, 1])."""
    best = 0.0
    for start in range(0, len(x), chunk):
        a = to_float(x[start : start + chunk], device).flatten(1).double()  # float64: cdist's matmul shortcut
        for other in range(start, len(x), chunk):  # loses precision in float32, more so under TF32
            b = to_float(x[other : other + chunk], device).flatten(1).double()
            best = max(best, torch.cdist(a, b).max().item())
    return best


def technique2_gamma(n_dims: int, target: float = 0.5) -> float:
    """Technique 2: the ladder ratio gamma = sigma_{i-1} / sigma_i solving
    Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma) = target (bisection)."""
    phi = lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))  # noqa: E731 - standard normal CDF
    shift = lambda g: math.sqrt(2 * n_dims) * (g - 1)  # noqa: E731
    overlap = lambda g: phi(shift(g) + 3 * g) - phi(shift(g) - 3 * g)  # noqa: E731
    low, high = 1.0, 2.0  # overlap(1) ~ 0.997 > target > overlap(2); it decreases in gamma
    for _ in range(100):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if overlap(mid) > target else (low, mid)
    return 0.5 * (low + high)


def technique2_n_sigmas(sigma_max: float, sigma_min: float, n_dims: int, target: float = 0.5) -> int:
    """Technique 2: the number of levels L so that a geometric ladder from sigma_max to sigma_min has ratio <= gamma."""
    return math.ceil(math.log(sigma_max / sigma_min) / math.log(technique2_gamma(n_dims, target))) + 1


def technique4_variance_ratio(step_lr: float, n_steps_each: int, gamma: float, sigma_min: float) -> float:
    """NCSNv2 Prop. 3 in Alg. 1's step convention: Var(x_T) / sigma_i^2 after T steps at level i when the data
    is one point and the chain starts from the previous level's N(0, sigma_{i-1}^2 I)."""
    e = step_lr / sigma_min**2
    a = 1 - e / 2  # x_t = a x_{t-1} + sqrt(alpha) z for the score -x / sigma_i^2
    stationary = e / (1 - a * a)  # the chain's own stationary variance over sigma_i^2 (> 1: discretisation)
    return a ** (2 * n_steps_each) * (gamma**2 - stationary) + stationary


def technique4_step_lr(n_steps_each: int, gamma: float, sigma_min: float, n_grid: int = 4000) -> float:
    """Technique 4: the step_lr (epsilon) that brings technique4_variance_ratio closest to 1 for a given T."""
    grid = (
        torch.logspace(-8, 0, n_grid, dtype=torch.float64) * sigma_min**2
    )  # e = step_lr / sigma_L^2 in (0, 1]
    errors = [abs(technique4_variance_ratio(float(s), n_steps_each, gamma, sigma_min) - 1) for s in grid]
    return float(grid[min(range(n_grid), key=errors.__getitem__)])
