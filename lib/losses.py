"""Losses: pure functions, tensors in, tensors out. Bounds keep the paper's sign (`elbo`: higher is better)
and a loss is the negated mean bound. Symbols are defined where first used in each section.

bits/dim of 8-bit images under a discrete likelihood is NLL / (D ln 2), D = 3 * 32 * 32 = 3072, NLL in nats;
no extra term is needed because the likelihood already assigns probability to the 256 levels.
"""

from __future__ import annotations

import math

import torch

from .data import N_DIMS


def bits_per_dim(nll_nats: torch.Tensor | float, n_dims: int = N_DIMS) -> torch.Tensor | float:
    """Bits per dimension from a per-image negative log-likelihood in nats: nll / (D ln 2)."""
    return nll_nats / (n_dims * math.log(2.0))


# --- NCSN: annealed denoising score matching (Song & Ermon 2019) -----------------------------------
# sigmas: the descending noise ladder (L,); level: index of a sample's sigma (B,) long; noise: z ~ N(0, I);
# score(x_noisy, level) -> s_theta shaped like x. lambda(sigma) = sigma^anneal_power weights the levels (eq. 6).


def dsm_loss(
    score,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    anneal_power: float = 2.0,
    level: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
):
    """Annealed DSM (eq. 5-6): per-sample 1/2 lambda(sigma) ||s(x + sigma z, level) + z / sigma||^2, (B,),
    and the levels used (B,), drawn uniformly per sample unless given."""
    sigmas = sigmas.to(x.device)
    if level is None:
        level = torch.randint(0, len(sigmas), (x.shape[0],), device=x.device)
    noise = torch.randn_like(x) if noise is None else noise
    sigma = sigmas[level].view(-1, *[1] * (x.dim() - 1))  # (B, 1, ..., 1)
    target = -noise / sigma  # grad log N(x~; x, sigma^2 I) = -(x~ - x) / sigma^2
    error = (score(x + sigma * noise, level).float() - target).pow(2).flatten(1).sum(1)
    return 0.5 * error * sigma.flatten() ** anneal_power, level


def per_level_means(values: torch.Tensor, level: torch.Tensor, n_levels: int) -> torch.Tensor:
    """Unbiased per-level means of per-sample `values` under uniform levels: sum over the level's samples
    divided by its expected count B / L (never NaN for an empty level; averaging over steps sharpens it). (L,)"""
    sums = torch.zeros(n_levels, device=values.device).index_add_(0, level, values.detach().float())
    return sums * n_levels / values.shape[0]


# --- VAE family: beta-ELBO, capacity annealing, IWAE, DReG (Higgins 2017, Burgess 2018, Burda 2016, Tucker 2019)
# log_px_z: log p(x|z) (B,) or (k, B); kl: KL(q(z|x) || p(z)) (B,); beta: the KL weight; log_w: log importance
# weights log p(x, z_i) - log q(z_i|x), (k, B); gamma, capacity: Burgess et al.'s weight and target KL C (nats).


def beta_elbo(log_px_z: torch.Tensor, kl: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
    """Named per-image terms (B,) of the beta-ELBO E_q[log p(x|z)] - beta KL (Higgins et al. 2017, eq. 4).

    reconstruction = -log p(x|z) (nats), kl, elbo (beta = 1, a bound on log p(x)), beta_elbo (the objective).
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    return {"reconstruction": -log_px_z, "kl": kl, "elbo": log_px_z - kl, "beta_elbo": log_px_z - beta * kl}


def capacity_at(step: int, capacity_max: float, capacity_steps: int) -> float:
    """C at `step`: linear from 0 to capacity_max over capacity_steps, then constant (Burgess et al. 2018, Sec. 4)."""
    return capacity_max * min(1.0, step / max(1, capacity_steps))


def capacity_elbo(
    log_px_z: torch.Tensor, kl: torch.Tensor, gamma: float, capacity: float
) -> dict[str, torch.Tensor]:
    """Burgess et al. (2018) eq. 8: named per-image terms (B,): reconstruction, kl, elbo (beta = 1) and the
    objective capacity_elbo = E_q[log p(x|z)] - gamma |KL - C|."""
    terms = beta_elbo(log_px_z, kl, 1.0)
    del terms["beta_elbo"]  # beta plays no part here: the objective keeps its own name
    terms["capacity_elbo"] = log_px_z - gamma * (kl - capacity).abs()
    return terms


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """L_k = logsumexp_i log w_i - log k over dim 0 (Burda et al. 2016, eq. 8): log_w (k, B) -> (B,)."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def iwae_loss(log_w: torch.Tensor) -> torch.Tensor:
    """The IWAE training loss -mean_B L_k; its reparameterised gradient is eq. 13 of Burda et al."""
    return -iwae_bound(log_w).mean()


def dreg_loss(log_w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """A surrogate whose gradient is DReG (Tucker et al. 2019, eq. 7) for q and IWAE's for p: value -mean_B sum_i w~_i log w_i.

    log_w (k, B) must be computed with q's parameters stopped (q.detach().log_prob(z)), so q's parameters get
    gradient only through the reparameterised z (k, B, L). The decoder gets sum_i w~_i grad log w_i (IWAE); a hook
    scales the gradient reaching z_i by w~_i, so the encoder gets sum_i w~_i^2 d log w_i / dz_i dz_i / dphi.
    """
    w_tilde = torch.softmax(log_w.detach(), dim=0)  # normalised importance weights (k, B)
    if z.requires_grad:
        z.register_hook(lambda grad: grad * w_tilde.unsqueeze(-1).to(grad.dtype))
    return -(w_tilde * log_w).sum(0).mean()


# --- NVAE: KL warm-up and balancing, spectral regularisation, BatchNorm-scale term (Vahdat & Kautz 2020) ------
# kl (B, G): per-image KL of each of the G latent groups (nats); alpha (G,): a group's relative size (official
# code: groups at a scale with 4x the positions get 4x the alpha); coeff: the KL warm-up weight in [kl_min, 1];
# weight (n, out, in): n same-shaped weight matrices; u (n, out): their persistent power-iteration vectors.


def kl_coeff_at(step: int, warmup_steps: int, start: int = 0, min_coeff: float = 1e-4) -> float:
    """KL warm-up (NVAE Sec. 3.2.1): linear from min_coeff to 1 over warmup_steps, the window opening at `start`."""
    if warmup_steps <= 0:
        return 1.0
    return max(min(1.0, (step - start) / warmup_steps), min_coeff)


def kl_balance(
    kl: torch.Tensor, alpha: torch.Tensor, coeff: float, balance: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """coeff * sum_l gamma_l KL_l per image (B,) and the weights gamma (G,) (NVAE App. A, "KL balancing").

    While coeff < 1, gamma_l is proportional to the batch-mean |KL_l| (+0.01) over alpha_l, normalised to mean 1
    and not differentiated, so groups that carry little information are pushed to carry more; at coeff = 1 all
    gamma_l are 1 and the objective is the ELBO."""
    if not balance or coeff >= 1.0:
        return coeff * kl.sum(1), torch.ones(kl.shape[1], device=kl.device)
    gamma = (kl.detach().abs().mean(0) + 0.01) / alpha.to(kl.device)
    gamma = gamma / gamma.mean()
    return coeff * (kl * gamma).sum(1), gamma


@torch.no_grad()
def _power_steps(weight: torch.Tensor, u: torch.Tensor, n_iter: int, eps: float = 1e-12):
    """n_iter batched power-iteration steps on W (n, out, in) from u (n, out): (u, v), both unit norm."""
    v = None
    for _ in range(n_iter):
        v = torch.nn.functional.normalize(torch.einsum("noi,no->ni", weight, u), dim=1, eps=eps)
        u = torch.nn.functional.normalize(torch.einsum("noi,ni->no", weight, v), dim=1, eps=eps)
    return u, v


def power_iteration(
    weight: torch.Tensor, u: torch.Tensor, n_iter: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest singular values sigma = u^T W v (n,), differentiable in W, and the updated u (n, out), both in
    fp32 at least (float64 stays float64), also under autocast.

    Miyato et al. (2018) Alg. 1, batched over n same-shaped matrices as in NVAE's official code; u persists
    between steps, so one iteration per training step suffices once it has converged."""
    weight = weight.to(torch.promote_types(weight.dtype, torch.float32))
    with torch.autocast(weight.device.type, enabled=False):  # autocast would run the einsums in bf16 / fp16
        u, v = _power_steps(weight.detach(), u.to(weight.dtype), n_iter)
        sigma = torch.einsum("no,noi,ni->n", u, weight, v)
    return sigma, u


def spectral_coeff_at(kl_coeff: float, final: float, initial: float) -> float:
    """NVAE's lambda schedule: log-linear from `initial` to `final` as the KL warm-up coefficient goes 0 -> 1."""
    return math.exp((1.0 - kl_coeff) * math.log(initial) + kl_coeff * math.log(final))


def bn_scale_penalty(scales: list[torch.Tensor]) -> torch.Tensor:
    """sum over BatchNorm layers of max_c |gamma_c| (NVAE official code's batchnorm_loss): keeps BN from undoing
    the spectral regulariser by growing its scales."""
    return torch.stack([s.abs().max() for s in scales]).sum() if scales else torch.zeros(())
