"""Image generation with a noise-conditional score: the noise ladder, annealed Langevin dynamics (Song & Ermon
2019, Algorithm 1), inpainting, and NCSNv2's rules for choosing the ladder (Song & Ermon 2020).

Symbols: `sigmas` the descending noise ladder sigma_1 > ... > sigma_L; `level` an index into it; `score(x, level)`
a callable returning s(x, sigma_level) shaped like x; `step_lr` the paper's epsilon; `n_steps_each` its T.
Algorithm 1 steps x <- x + alpha_i / 2 * s + sqrt(alpha_i) z with alpha_i = step_lr * sigma_i^2 / sigma_L^2.
(The NCSN and NCSNv2 code step x + alpha s + sqrt(2 alpha) z, so their step_lr is half of ours for the same chain.)
Speed (a compiled step, a bf16 score) is lib.common.sampler_speed's, wired in by lib.models.ncsn.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .data import to_float

Score = Callable[[torch.Tensor, int], torch.Tensor]
NoiseFn = Callable[[torch.Tensor], torch.Tensor]
Step = Callable[..., torch.Tensor]


def geometric_sigmas(sigma_max: float, sigma_min: float, n: int) -> torch.Tensor:
    """The descending geometric ladder sigma_1 = sigma_max, ..., sigma_L = sigma_min: (n,) float32."""
    if n < 1:
        raise ValueError(f"n (the number of levels L) must be >= 1, got {n}")
    if sigma_min <= 0:
        raise ValueError(f"sigma_min must be > 0 (the ladder is geometric), got {sigma_min}")
    if sigma_min >= sigma_max:  # as NCSNConfig: a ladder that does not descend anneals nothing
        raise ValueError(f"sigma_min must be < sigma_max, got sigma_min={sigma_min} >= sigma_max={sigma_max}")
    if n == 1:
        return torch.tensor([float(sigma_max)])
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), n, dtype=torch.float64).float()


def ladder_ratio(sigma_max: float, sigma_min: float, n_sigmas: int) -> float:
    """gamma = sigma_{i-1} / sigma_i of the geometric ladder (1 for a single level)."""
    return (sigma_max / sigma_min) ** (1 / (n_sigmas - 1)) if n_sigmas > 1 else 1.0


def _check_chain(n_steps_each: int, step_lr: float) -> None:
    """Reject a chain that cannot run: T < 1, or epsilon <= 0 (0 never moves; < 0 has no sqrt(alpha_i))."""
    if n_steps_each < 1:
        raise ValueError(f"n_steps_each (T, Langevin steps per level) must be >= 1, got {n_steps_each}")
    if step_lr <= 0:
        raise ValueError(f"step_lr (epsilon of Alg. 1) must be > 0, got {step_lr}")


def langevin_step(score: Score, x: torch.Tensor, level, alpha, noise: torch.Tensor) -> torch.Tensor:
    """Alg. 1, line 6: x + alpha_i / 2 * s(x, sigma_i) + sqrt(alpha_i) z. level: an int or (B,) long; alpha: a
    float or a 0-dim tensor (so that one compiled graph serves every level)."""
    return x + 0.5 * alpha * score(x, level) + alpha**0.5 * noise


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
    step: Step = langevin_step,
    constrain: Callable[[int], Callable] | None = None,
):
    """Annealed Langevin dynamics (Alg. 1) from x (B, ...); returns x, or (x, trajectory) on request.

    denoise: finish with the Tweedie step x + sigma_L^2 s(x, L) (NCSNv2 Appendix), which removes the last
    level's noise. trajectory: a list of CPU snapshots, the start and every `keep_every` steps (default: the
    end of each level), then the denoised result. noise_fn(x) draws the injected noise (default N(0, I)).
    step: langevin_step, or a faster function of its arguments (lib.common.sampler_speed). constrain(level):
    a map applied to x before the level's first step and after each step (inpainting's known pixels).
    """
    _check_chain(n_steps_each, step_lr)
    sigmas = [float(s) for s in sigmas]
    noise_fn = noise_fn or torch.randn_like
    keep_every = keep_every or n_steps_each
    trajectory = [x.detach().cpu()] if return_trajectory else None
    for level, sigma in enumerate(sigmas):
        alpha = step_lr * (sigma / sigmas[-1]) ** 2  # alpha_i = eps * sigma_i^2 / sigma_L^2
        hold = constrain(level) if constrain is not None else (lambda v: v)
        x = hold(x)
        for t in range(n_steps_each):
            x = hold(step(score, x, level, alpha, noise_fn(x)))
            if trajectory is not None and (t + 1) % keep_every == 0:
                trajectory.append(x.detach().cpu())
    if denoise:
        x = x + sigmas[-1] ** 2 * score(x, len(sigmas) - 1)  # Tweedie: E[x_0 | x] at sigma_L
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

    def constrain(level: int):
        known_noisy = x_known + sigmas[level] * torch.randn_like(x_known)  # Alg. 2: y~ = y + sigma_i z
        return lambda v: mask * known_noisy + (1 - mask) * v

    x = torch.rand(x_known.shape, generator=generator, device=x_known.device if generator is None else "cpu")
    x = annealed_langevin(
        score, x.to(x_known.device), sigmas, n_steps_each, step_lr, denoise, constrain=constrain
    )
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
    grid = torch.logspace(-8, 0, n_grid, dtype=torch.float64) * sigma_min**2  # step_lr / sigma_L^2 in (0, 1]
    errors = [abs(technique4_variance_ratio(float(s), n_steps_each, gamma, sigma_min) - 1) for s in grid]
    return float(grid[min(range(n_grid), key=errors.__getitem__)])
