"""Likelihood and latent-space numbers: importance-weighted log-likelihood and the VAE family's evaluation
(Burda et al. 2016), NVAE's ELBO and L_k (Vahdat & Kautz 2020), active units, reconstruction error.

bits/dim is NLL / (3072 ln 2) (lib.losses.bits_per_dim), with no extra term because the likelihoods are discrete
over the 256 levels. Likelihoods are evaluated in eval mode (BatchNorm running statistics), whatever mode the
model was in. A VAE here offers posterior(x) -> q with .mu, log_weights(x, k, q=q) -> (log_w (k, B), z) and
reconstruct(x); a hierarchical VAE offers elbo_terms(x) -> (log p(x|z) (B,), per-group KL (B, G)) and
log_weights(x, k) -> log_w (k, B).
"""

from __future__ import annotations

import contextlib

import torch

from ..common.accelerator import free_memory_bytes
from ..common.progress import Progress
from ..data import to_float
from ..losses import bits_per_dim, iwae_bound
from ..models.vae import beta_vae_terms


@contextlib.contextmanager
def _eval_mode(model):
    """Run the block with `model` in eval mode (BatchNorm uses, and keeps, its running statistics), then restore."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _batches(x, batch_size: int, device):
    """Float [0, 1] batches (b, 3, 32, 32) on `device` of images x (uint8 or float in [0, 1])."""
    for start in range(0, len(x), batch_size):
        yield to_float(x[start : start + batch_size], device)


@torch.no_grad()
def importance_log_weights(model, x: torch.Tensor, k: int = 5000, k_chunk: int = 500) -> torch.Tensor:
    """log w_i = log p(x, z_i) - log q(z_i|x) for k posterior draws z_i per image, (k, B), x (B, 3, 32, 32) in
    [0, 1]; drawn k_chunk at a time (memory ~ B * k_chunk decoded images)."""
    if k < 1 or k_chunk < 1:
        raise ValueError(f"k and k_chunk must be >= 1, got k={k}, k_chunk={k_chunk}")
    q = model.posterior(x)
    return torch.cat([model.log_weights(x, min(k_chunk, k - done), q=q)[0] for done in range(0, k, k_chunk)])


@torch.no_grad()
def importance_log_likelihood(model, x: torch.Tensor, k: int = 5000, k_chunk: int = 500) -> torch.Tensor:
    """log p(x) ~ L_k (Burda et al. eq. 8) in nats per image (B,), x (B, 3, 32, 32) in [0, 1]."""
    return iwae_bound(importance_log_weights(model, x, k, k_chunk))  # (k, B) -> (B,)


def bound_numbers(per_bound: torch.Tensor, per_elbo: torch.Tensor, k: int) -> dict:
    """L_k and the ELBO of the same images from the same draws (per image, nats): their means in nats and bits/dim,
    the standard errors of the means over the images (not of the bounds' own bias), and the paired gap
    ELBO - L_k in bits/dim with its paired standard error. L_k >= ELBO image by image (Jensen), so the gap is >= 0."""
    per_bound, per_elbo = per_bound.double(), per_elbo.double()
    gap = bits_per_dim(per_bound - per_elbo)  # (B,) bits/dim by which L_k is tighter
    return {
        "k": k,
        "n_images": len(per_bound),
        "log_px_nats": per_bound.mean().item(),
        "bpd": bits_per_dim(-per_bound.mean().item()),
        "bpd_se": bits_per_dim(standard_error(per_bound)),
        "bpd_per_image": bits_per_dim(-per_bound).tolist(),  # for paired comparisons on the same images
        "elbo_nats": per_elbo.mean().item(),
        "bpd_elbo": bits_per_dim(-per_elbo.mean().item()),
        "bpd_elbo_se": bits_per_dim(standard_error(per_elbo)),
        "bpd_gap": gap.mean().item(),
        "bpd_gap_se": standard_error(gap),  # paired: over the same images and draws
    }


def weight_spread(log_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How concentrated the normalised importance weights w_i / sum_j w_j of each image are, from log_w (k, B):
    (the largest normalised weight (B,), in [1/k, 1]; the effective sample size 1 / sum_i w_i^2 (B,), in [1, k])."""
    log_norm = log_w.double() - torch.logsumexp(log_w.double(), 0)  # log normalised weights, (k, B)
    return log_norm.max(0).values.exp().float(), (-torch.logsumexp(2 * log_norm, 0)).exp().float()


@torch.no_grad()
def evaluate_likelihood(
    model, x, k: int = 5000, batch_size: int = 8, k_chunk: int = 500, device=None
) -> dict:
    """L_k (log p(x) estimate) and the ELBO (beta = 1) over images x (uint8 or [0, 1]) from the same k posterior
    draws per image: the ELBO is the mean of the log-weights, L_k their log-mean-exp (bound_numbers); and, from
    the same weights, their spread (weight_spread: the largest normalised weight and the effective sample size,
    means over the images with their standard errors)."""
    device = device or torch.device("cpu")
    bound, elbo, spread = [], [], []
    with _eval_mode(model), Progress(len(x), f"importance-weighted L_{k}", "img") as bar:
        for xb in _batches(x, batch_size, device):
            log_w = importance_log_weights(model, xb, k, k_chunk)  # (k, B)
            bound.append(iwae_bound(log_w).cpu())
            elbo.append(log_w.mean(0).cpu())
            spread.append(torch.stack(weight_spread(log_w)).cpu())  # (2, B)
            bar.update(len(xb))
    w_max, ess = torch.cat(spread, 1)
    numbers = bound_numbers(torch.cat(bound), torch.cat(elbo), k)
    spread = dict(weight_max=w_max.mean().item(), weight_max_se=standard_error(w_max))
    return numbers | spread | dict(ess=ess.mean().item(), ess_se=standard_error(ess))


@torch.no_grad()
def posterior_means(model, x, batch_size: int = 256, device=None) -> torch.Tensor:
    """E_q[z|x] = mu for images x, (N, L) on the CPU."""
    device = device or torch.device("cpu")
    return torch.cat([model.posterior(xb).mu.cpu() for xb in _batches(x, batch_size, device)])


@torch.no_grad()
def kl_per_unit(model, x, batch_size: int = 256, device=None) -> torch.Tensor:
    """The mean KL(q(z_j|x) || N(0, 1)) of each latent unit j over images x, (L,) nats on the CPU: the rate each
    unit carries, summing to the ELBO's KL. Sorted, it is the spectrum that shows which units a beta prunes."""
    device = device or torch.device("cpu")
    total, count = 0.0, 0
    for xb in _batches(x, batch_size, device):
        q = model.posterior(xb)
        total = total + (0.5 * (q.mu**2 + q.logvar.exp() - 1.0 - q.logvar)).sum(0).double().cpu()
        count += len(xb)
    return total / count


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> torch.Tensor:
    """Burda et al. (2016, Sec. 5.2): unit j is active when Cov_x(E_q[z_j|x]) > threshold; mu (N, L) -> bool (L,)."""
    if mu.shape[0] < 2:
        raise ValueError(f"active units need at least 2 images, got {mu.shape[0]}")
    return mu.float().var(dim=0) > threshold


@torch.no_grad()
def reconstruction_error(model, x, batch_size: int = 256, device=None) -> float:
    """Mean squared error per subpixel ([0, 1] scale) between images x and their reconstructions at E_q[z]."""
    device = device or torch.device("cpu")
    total, count = 0.0, 0
    for xb in _batches(x, batch_size, device):
        total += float(((model.reconstruct(xb) - xb) ** 2).sum())
        count += xb.numel()
    return total / count


MEMORY_FRACTION = 0.5  # of the device's free memory that one decoder call of the bound may take
PROBE_COPIES = 4  # copies of one image in the call that measures the decoder's memory per image


@torch.no_grad()
def hierarchical_bounds(model, x, k: int = 100, k_chunk: int = 25, batch_size: int = 50, device=None) -> dict:
    """The ELBO and the importance-weighted bound L_k (k = 100 by default, 1000 optional) from the same k draws per
    image (bound_numbers), and the mean analytic KL of each latent group (nats), over images x (uint8 or [0, 1]);
    k samples are drawn k_chunk at a time, fewer where batch_size x k_chunk decoded images would not fit in the
    device's free memory (fitting_k_chunk)."""
    if k < 1 or k_chunk < 1:
        raise ValueError(f"k and k_chunk must be >= 1, got k={k}, k_chunk={k_chunk}")
    device = device or next(model.parameters()).device
    elbo, bound, kl, chunk = [], [], [], None
    with _eval_mode(model), Progress(len(x), f"ELBO and L_{k}", "img", final_line=k > 1) as bar:
        for xb in _batches(x, batch_size, device):
            bar.update(len(xb))
            kl.append(model.elbo_terms(xb)[1].cpu())  # the analytic KL of each group (B, G)
            chunk = chunk or fitting_k_chunk(model, xb, min(k_chunk, k))  # sized on the first, largest batch
            log_w = torch.cat([model.log_weights(xb, min(chunk, k - done)) for done in range(0, k, chunk)])
            bound.append(iwae_bound(log_w).cpu())  # (k, B) -> (B,)
            elbo.append(log_w.mean(0).cpu())  # the same draws: L_k >= ELBO image by image
    numbers = bound_numbers(torch.cat(bound), torch.cat(elbo), k)
    shared = (
        "k",
        "n_images",
        "elbo_nats",
        "bpd_elbo",
        "bpd_elbo_se",
        "bpd_gap",
        "bpd_gap_se",
        "bpd_per_image",
    )
    return {
        **{key: numbers[key] for key in shared},
        "iw_nats": numbers["log_px_nats"],
        "bpd_iw": numbers["bpd"],
        "bpd_iw_se": numbers["bpd_se"],
        "kl_per_group_nats": torch.cat(kl).mean(0).tolist(),
        "bounds_on": f"{len(x)} images, both bounds from the same {k} draws per image",
    }


def standard_error(per_image: torch.Tensor) -> float:
    """The standard error of the mean of per-image values (nan for fewer than two)."""
    return per_image.std().item() / len(per_image) ** 0.5 if len(per_image) > 1 else float("nan")


def fitting_k_chunk(model, xb: torch.Tensor, k_chunk: int) -> int:
    """The most copies per log_weights call, at most k_chunk, whose len(xb) x copies decoded images fit in
    MEMORY_FRACTION of the device's free memory. A hierarchical decoder holds every group's activations (NVAE's
    reference size: 6.4-6.9 MB per image in fp32, as issue 23 measured on a CPU), so 100 images x 25 copies need
    ~17 GB: more than a T4 has. Where free memory is unknown (CPU), k_chunk as given."""
    free = free_memory_bytes(xb.device)
    if free is None:
        return k_chunk
    per_image = decoder_bytes_per_image(model, xb)
    return max(1, min(k_chunk, int(MEMORY_FRACTION * free // (per_image * len(xb)))))


def decoder_bytes_per_image(model, xb: torch.Tensor) -> int:
    """Peak CUDA memory of log_weights per decoded image, measured on PROBE_COPIES copies of one image (CUDA only:
    fitting_k_chunk asks only where the free memory is known)."""
    device = xb.device
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    model.log_weights(xb[:1], PROBE_COPIES)
    return max(1, (torch.cuda.max_memory_allocated(device) - before) // PROBE_COPIES)


@torch.no_grad()
def elbo_terms(model, x, batch_size: int = 256, device=None, model_cfg=None, step: int = 0) -> dict:
    """Test-set means of -E_q log p(x|z) (one z per image), the analytic KL, the ELBO and the trained objective
    (under lib.models.objective_name(model_cfg), at training step `step`), in nats per image."""
    device = device or torch.device("cpu")
    log_px_z, kl = [], []
    for xb in _batches(x, batch_size, device):
        q = model.posterior(xb)
        log_px_z.append(model.log_px_z(xb, q.rsample()).cpu())
        kl.append(q.kl_standard_normal().cpu())
    terms = beta_vae_terms(model_cfg, torch.cat(log_px_z), torch.cat(kl), step)  # what BetaVAE.loss computes
    return {name: value.mean().item() for name, value in terms.items()}  # |KL - C| per image, as trained


def evaluate_vae(
    model,
    x_test,
    k: int,
    n_likelihood: int,
    device,
    ll_batch: int = 8,
    k_chunk: int = 500,
    model_cfg=None,
    step: int = 0,
) -> dict:
    """Everything the notebooks tabulate for one model (EMA weights, eval mode) on test images x_test (uint8).

    The bounds (L_k and the ELBO, bpd_k and bpd_elbo) come from the first n_likelihood images and the same k draws
    per image (it costs k decoder passes per image), so L_k >= ELBO holds by construction; the ELBO's terms
    (reconstruction, kl, elbo and the trained objective, in nats), active units and mse use all n_test images; the
    spread of the bounds' normalised importance weights (weight_max, ess) comes from the same draws. Active units: Burda et al.'s Cov_x(E_q[z_j]) > 0.01. model_cfg and the training
    step give the trained objective (beta_elbo, or capacity_elbo at C of that step); None: the beta = 1 ELBO.
    """
    model = model.eval()
    terms = elbo_terms(model, x_test, device=device, model_cfg=model_cfg, step=step)
    ll = evaluate_likelihood(
        model, x_test[:n_likelihood], k=k, batch_size=ll_batch, k_chunk=k_chunk, device=device
    )
    mu = posterior_means(model, x_test, device=device)
    active = active_units(mu)
    return {
        **terms,
        "n_test": len(x_test),
        "bpd_elbo": ll["bpd_elbo"],
        "bpd_elbo_se": ll["bpd_elbo_se"],
        "bpd_gap": ll["bpd_gap"],
        "bpd_gap_se": ll["bpd_gap_se"],
        "bounds_on": f"the first {ll['n_images']} test images, both bounds from the same {k} draws per image",
        **{key: ll[key] for key in ("weight_max", "weight_max_se", "ess", "ess_se")},  # the same draws
        "log_px_k": ll["log_px_nats"],
        "bpd_k": ll["bpd"],
        "bpd_k_se": ll["bpd_se"],
        "bpd_k_per_image": ll["bpd_per_image"],
        "k_eval": k,
        "n_likelihood": ll["n_images"],
        "n_active": int(active.sum()),
        "latent_dim": len(active),
        "mse": reconstruction_error(model, x_test, device=device),
        "unit_variance": mu.var(0).tolist(),
        "kl_per_unit": kl_per_unit(model, x_test, device=device).tolist(),  # nats, per latent unit
    }
