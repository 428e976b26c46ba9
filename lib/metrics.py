"""Evaluation numbers: bits/dim, likelihood bounds (the VAE family's importance-weighted log-likelihood, NVAE's
ELBO and L_k), active units, nearest neighbours, and (from lib.fidelity / lib.feature_classifier) the Fréchet
distances fd_c10 and FID, precision/recall, IS and KID.

bits/dim of 8-bit images with a discrete likelihood is NLL / (D ln 2) with D = 3 * 32 * 32 = 3072 and the NLL
in nats; no extra term is needed because the likelihood already assigns probability to the 256 levels.
Likelihoods are evaluated in eval mode (BatchNorm running statistics), whatever mode the model was in.
"""
from __future__ import annotations

import contextlib
import math

import torch

from .losses import iwae_bound

N_DIMS = 3 * 32 * 32  # D, subpixels of one CIFAR-10 image


def bits_per_dim(nll_nats: torch.Tensor | float, n_dims: int = N_DIMS) -> torch.Tensor | float:
    """Bits per dimension from a per-image negative log-likelihood in nats: nll / (D ln 2)."""
    return nll_nats / (n_dims * math.log(2.0))


# --- Nearest neighbours in pixel space (memorisation checks; NCSNv2 technique 1) ----------------------

def _flat(x, device) -> torch.Tensor:
    """Images (N, ...) uint8 (read as /255) or float in [0, 1] -> float32 (N, D) on `device`."""
    x = torch.as_tensor(x)
    return (x.float() / 255 if x.dtype == torch.uint8 else x.float()).reshape(len(x), -1).to(device)


@torch.no_grad()
def nearest_neighbours(queries, reference, k: int = 1, chunk: int = 4096, device=None):
    """L2 nearest neighbours in pixel space ([0, 1] scale): (distances (Q, k), indices (Q, k)) into `reference`.

    Reference images are streamed in chunks, so 50k training images need only one chunk's distances at a time.
    """
    device = device or torch.device("cpu")
    q = _flat(queries, device)
    best_d = torch.full((len(q), k), float("inf"), device=device)
    best_i = torch.zeros((len(q), k), dtype=torch.long, device=device)
    for start in range(0, len(reference), chunk):
        r = _flat(reference[start:start + chunk], device)
        d = torch.cdist(q, r)                                               # (Q, chunk)
        d_all = torch.cat([best_d, d], dim=1)
        i_all = torch.cat([best_i, torch.arange(start, start + len(r), device=device).expand(len(q), -1)], dim=1)
        best_d, pick = d_all.topk(k, dim=1, largest=False)
        best_i = i_all.gather(1, pick)
    return best_d.cpu(), best_i.cpu()


@torch.no_grad()
def largest_pairwise_distance(x, chunk: int = 2048, device=None) -> float:
    """max_{i,j} ||x_i - x_j||_2 over images (N, ...) in [0, 1] (NCSNv2 technique 1 sets sigma_1 to it)."""
    device = device or torch.device("cpu")
    best = 0.0
    for start in range(0, len(x), chunk):
        a = _flat(x[start:start + chunk], device)
        for other in range(start, len(x), chunk):
            best = max(best, torch.cdist(a, _flat(x[other:other + chunk], device)).max().item())
    return best


# --- Sample quality: Fréchet distances, fd_c10, precision/recall, FID/IS/KID (evaluation issue) -------------
# Implemented in lib.fidelity (distances) and lib.feature_classifier (the classifier behind fd_c10); the public
# names live here. `python -m lib.metrics train-classifier [--epochs N] [--smoke]` trains and stores it.
from .feature_classifier import (CLASSIFIER_FULL, CLASSIFIER_TINY, ClassifierConfig,  # noqa: E402
                                 ensure_classifier, load_classifier)
from .fidelity import (INCEPTION_ENV, FDResult, InceptionWeightsError, fd_c10, feature_stats,  # noqa: E402
                       frechet_distance, inception_metrics, inception_weights_path, precision_recall)


# --- VAE family: importance-weighted log-likelihood, active units, reconstruction error (Burda et al. 2016) -----
# A VAE here offers posterior(x) -> q with .mu, log_weights(x, k, q=q) -> (log_w (k, B), z), reconstruct(x).

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
        chunk = torch.as_tensor(x[start:start + batch_size])
        yield (chunk.float() / 255 if chunk.dtype == torch.uint8 else chunk.float()).to(device)


@torch.no_grad()
def importance_log_likelihood(model, x: torch.Tensor, k: int = 5000, k_chunk: int = 500) -> torch.Tensor:
    """log p(x) ~ L_k (Burda et al. eq. 8) in nats per image (B,), x (B, 3, 32, 32) in [0, 1]; the k samples are
    drawn k_chunk at a time (memory ~ B * k_chunk decoded images) and combined by one logsumexp."""
    if k < 1 or k_chunk < 1:
        raise ValueError(f"k and k_chunk must be >= 1, got k={k}, k_chunk={k_chunk}")
    q = model.posterior(x)
    log_w = torch.cat([model.log_weights(x, min(k_chunk, k - done), q=q)[0] for done in range(0, k, k_chunk)])
    return iwae_bound(log_w)  # (k, B) -> (B,)


@torch.no_grad()
def evaluate_likelihood(model, x, k: int = 5000, batch_size: int = 8, k_chunk: int = 500, device=None) -> dict:
    """Mean log p(x) estimate L_k and the ELBO (beta = 1) over images x (uint8 or [0, 1]), in nats and bits/dim."""
    device = device or torch.device("cpu")
    log_px, elbo = [], []
    with _eval_mode(model):
        for xb in _batches(x, batch_size, device):
            log_px.append(importance_log_likelihood(model, xb, k, k_chunk).cpu())
            elbo.append(model.log_weights(xb, min(k, 100))[0].mean(0).cpu())  # ELBO averaged over up to 100 z
    log_px, elbo = torch.cat(log_px).mean().item(), torch.cat(elbo).mean().item()
    return {"k": k, "n_images": len(x), "log_px_nats": log_px, "bpd": bits_per_dim(-log_px),
            "elbo_nats": elbo, "bpd_elbo": bits_per_dim(-elbo)}


@torch.no_grad()
def posterior_means(model, x, batch_size: int = 256, device=None) -> torch.Tensor:
    """E_q[z|x] = mu for images x, (N, L) on the CPU."""
    device = device or torch.device("cpu")
    return torch.cat([model.posterior(xb).mu.cpu() for xb in _batches(x, batch_size, device)])


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


# --- NVAE: ELBO and importance-weighted bits/dim (Vahdat & Kautz 2020; Burda et al. 2016) ---------------------
# A hierarchical VAE here offers elbo_terms(x) -> (log p(x|z) (B,), per-group KL (B, G)) and log_weights(x, k) ->
# log_w (k, B). Both bounds are in nats per image; bits/dim = -bound / (3072 ln 2) with no extra term, because
# the decoder's likelihood is discrete over the 256 levels.

@torch.no_grad()
def hierarchical_bounds(model, x, k: int = 100, k_chunk: int = 25, batch_size: int = 50, device=None) -> dict:
    """Mean ELBO (analytic group KLs), the importance-weighted bound L_k (k = 100 by default, 1000 optional) and
    the mean KL of each latent group (nats) over images x (uint8 or [0, 1]); k samples are drawn k_chunk at a time."""
    if k < 1 or k_chunk < 1:
        raise ValueError(f"k and k_chunk must be >= 1, got k={k}, k_chunk={k_chunk}")
    device = device or next(model.parameters()).device
    elbo, bound, kl = [], [], []
    with _eval_mode(model):
        for xb in _batches(x, batch_size, device):
            log_px, kl_b = model.elbo_terms(xb)
            elbo.append((log_px - kl_b.sum(1)).cpu())
            kl.append(kl_b.cpu())
            log_w = torch.cat([model.log_weights(xb, min(k_chunk, k - done)) for done in range(0, k, k_chunk)])
            bound.append(iwae_bound(log_w).cpu())  # (k, B) -> (B,)
    elbo, bound = torch.cat(elbo).mean().item(), torch.cat(bound).mean().item()
    return {"k": k, "n_images": len(x), "elbo_nats": elbo, "bpd_elbo": bits_per_dim(-elbo),
            "iw_nats": bound, "bpd_iw": bits_per_dim(-bound), "kl_per_group_nats": torch.cat(kl).mean(0).tolist()}


def main(argv: list[str] | None = None) -> int:
    """CLI: `train-classifier` trains the fd_c10 classifier on the train split and stores it under outputs/."""
    import argparse
    import dataclasses

    from . import runs
    from .feature_classifier import classifier_dir

    parser = argparse.ArgumentParser(prog="python -m lib.metrics")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train-classifier", help="train the fd_c10 feature classifier (labels used only here)")
    p.add_argument("--epochs", type=int, help="passes over the training images (default: the preset's)")
    p.add_argument("--smoke", action="store_true", help="the tiny CPU classifier, stored under outputs/smoke/")
    p.add_argument("--device", help="cuda / cpu / mps (default: the best available)")
    p.add_argument("--force", action="store_true", help="retrain even when a classifier is stored")
    args = parser.parse_args(argv)
    smoke = args.smoke or runs.is_smoke()
    cfg = CLASSIFIER_TINY if smoke else CLASSIFIER_FULL
    cfg = dataclasses.replace(cfg, epochs=args.epochs) if args.epochs else cfg
    if args.force:
        (classifier_dir(smoke) / "classifier.json").unlink(missing_ok=True)
    trained = ensure_classifier(cfg=cfg, smoke=smoke, device=args.device)
    print(f"fd_c10 classifier in {classifier_dir(smoke)}: test accuracy {trained.test_accuracy:.2%} "
          f"(trained on {trained.data})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
