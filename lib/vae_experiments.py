"""One VAE configuration end to end, shared by notebooks 03 (beta sweep) and 04 (IWAE k comparison): train (or load
the finished run), then evaluate on test images with the same estimators for every model.

Numbers in nats per image unless named bpd (bits/dim = NLL / (3072 ln 2) under the discretized decoder).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from . import metrics
from .checkpoints import list_checkpoints
from .models import MODELS
from .train import TrainConfig, TrainResult, train


def train_vae(model_name: str, model_cfg, train_cfg: TrainConfig, x_train, run, device, data: str = "",
              seed: int = 0, continue_training: bool = True) -> TrainResult:
    """Build MODELS[model_name] from model_cfg (seeded weights) and train it, or load the run if it has finished.

    continue_training=False loads an existing checkpoint as it is (a wall-time-budgeted run would otherwise train
    for another cfg.max_minutes each time the notebook runs).
    """
    torch.manual_seed(seed)
    model = MODELS[model_name].build(model_cfg)
    stop_at = None if continue_training or not list_checkpoints(Path(run)) else 0
    return train(model, x_train, train_cfg, run, device=device, stop_at=stop_at,
                 model_config={"name": model_name, **asdict(model_cfg), "data": data})


def format_table(rows: list[dict], columns: dict[str, str]) -> str:
    """A plain-text table: columns maps a row key to its format spec (e.g. {"beta": "g", "bpd_k": ".3f"})."""
    cells = [[format(row[key], spec) for key, spec in columns.items()] for row in rows]
    widths = [max(len(key), *(len(r[i]) for r in cells)) for i, key in enumerate(columns)]
    lines = ["  ".join(key.rjust(w) for key, w in zip(columns, widths))]
    return "\n".join(lines + ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells])


@torch.no_grad()
def elbo_terms(model, x, batch_size: int = 256, device=None) -> dict:
    """Test-set means of -E_q log p(x|z) (one z per image), the analytic KL and the ELBO, in nats per image."""
    device = device or torch.device("cpu")
    recon, kl = [], []
    for xb in metrics._batches(x, batch_size, device):
        q = model.posterior(xb)
        recon.append(-model.log_px_z(xb, q.rsample()).cpu())
        kl.append(q.kl_standard_normal().cpu())
    recon, kl = torch.cat(recon).mean().item(), torch.cat(kl).mean().item()
    return {"reconstruction": recon, "kl": kl, "elbo": -(recon + kl)}


def evaluate_vae(model, x_test, k: int, n_likelihood: int, device, ll_batch: int = 8, k_chunk: int = 500,
                 beta: float = 1.0) -> dict:
    """Everything the notebooks tabulate for one model (EMA weights, eval mode) on test images x_test (uint8).

    The L_k estimate uses the first n_likelihood images (it costs k decoder passes per image); the other
    numbers use all of x_test. Active units: Burda et al.'s Cov_x(E_q[z_j]) > 0.01.
    """
    model = model.eval()
    terms = elbo_terms(model, x_test, device=device)
    ll = metrics.evaluate_likelihood(model, x_test[:n_likelihood], k=k, batch_size=ll_batch, k_chunk=k_chunk,
                                     device=device)
    mu = metrics.posterior_means(model, x_test, device=device)
    active = metrics.active_units(mu)
    return {**terms, "beta_elbo": -(terms["reconstruction"] + beta * terms["kl"]),
            "bpd_elbo": metrics.bits_per_dim(-terms["elbo"]), "log_px_k": ll["log_px_nats"], "bpd_k": ll["bpd"],
            "k_eval": k, "n_likelihood": ll["n_images"], "n_active": int(active.sum()), "latent_dim": len(active),
            "mse": metrics.reconstruction_error(model, x_test, device=device), "unit_variance": mu.var(0).tolist()}
