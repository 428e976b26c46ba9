"""One VAE configuration end to end, shared by notebooks 03 (beta sweep) and 04 (IWAE k comparison): train (or load
the finished run), then evaluate on test images with the same estimators for every model.

Numbers in nats per image unless named bpd (bits/dim = NLL / (3072 ln 2) under the discretized decoder).
Under Burgess et al.'s capacity objective (capacity_max > 0) lib.models.BetaVAE trains on
E_q log p(x|z) - gamma |KL - C| and ignores beta: the trained objective is then reported as capacity_elbo, never
as a beta_elbo, and a beta sweep under it is refused (check_beta_sweep).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from . import losses, metrics
from .checkpoints import list_checkpoints
from .models import MODELS, BetaVAEConfig, beta_vae_terms
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


def check_beta_sweep(betas: Sequence[float], capacity_max: float) -> None:
    """Refuse a sweep that would train one model under several labels: the capacity objective ignores beta."""
    if capacity_max > 0 and len(set(betas)) > 1:
        raise ValueError(
            f"BETAS={list(betas)} with CAPACITY_MAX={capacity_max:g}: under the capacity objective (Burgess et al. "
            "2018) BetaVAE trains on E_q log p(x|z) - gamma |KL - C| and ignores beta, so these runs would be the same "
            "model labelled with different betas. Sweep one beta with capacity (e.g. BETAS=[1.0]), or set "
            "CAPACITY_MAX = 0 to sweep beta on the beta-ELBO.")


def beta_vae_tag(model_cfg) -> str:
    """The run and results name part of one Beta-VAE: beta<beta>, or capacity<C_max>-gamma<gamma> when the
    capacity objective is trained (beta unused), so a capacity run never reuses a beta run's folder."""
    if objective_name(model_cfg) == "capacity_elbo":
        return f"capacity{model_cfg.capacity_max:g}-gamma{model_cfg.gamma:g}"
    return f"beta{model_cfg.beta:g}"


def objective_name(model_cfg=None) -> str:
    """The metrics key of the trained objective: capacity_elbo when model_cfg.capacity_max > 0, else beta_elbo."""
    return "capacity_elbo" if getattr(model_cfg, "capacity_max", 0.0) > 0 else "beta_elbo"


def objective_terms(model_cfg, log_px_z: torch.Tensor, kl: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
    """Per-image (B,) terms of what BetaVAE.loss optimises at `step`, keyed reconstruction, kl, elbo and
    objective_name(model_cfg); a config without beta (IWAE, None) gets the beta = 1 ELBO."""
    if isinstance(model_cfg, BetaVAEConfig):
        terms = beta_vae_terms(model_cfg, log_px_z, kl, step)  # exactly what BetaVAE.loss computes
    else:
        terms = losses.beta_elbo(log_px_z, kl, 1.0)
    terms[objective_name(model_cfg)] = terms.pop("beta_elbo")  # lib.losses names both objectives beta_elbo
    return terms


@torch.no_grad()
def elbo_terms(model, x, batch_size: int = 256, device=None, model_cfg=None, step: int = 0) -> dict:
    """Test-set means of -E_q log p(x|z) (one z per image), the analytic KL, the ELBO and the trained objective
    (objective_terms at training step `step`), in nats per image."""
    device = device or torch.device("cpu")
    log_px_z, kl = [], []
    for xb in metrics._batches(x, batch_size, device):
        q = model.posterior(xb)
        log_px_z.append(model.log_px_z(xb, q.rsample()).cpu())
        kl.append(q.kl_standard_normal().cpu())
    terms = objective_terms(model_cfg, torch.cat(log_px_z), torch.cat(kl), step)
    return {name: value.mean().item() for name, value in terms.items()}  # |KL - C| is averaged per image, as trained


def evaluate_vae(model, x_test, k: int, n_likelihood: int, device, ll_batch: int = 8, k_chunk: int = 500,
                 model_cfg=None, step: int = 0) -> dict:
    """Everything the notebooks tabulate for one model (EMA weights, eval mode) on test images x_test (uint8).

    The L_k estimate uses the first n_likelihood images (it costs k decoder passes per image); the other
    numbers use all of x_test. Active units: Burda et al.'s Cov_x(E_q[z_j]) > 0.01. model_cfg and the training
    step give the trained objective (beta_elbo, or capacity_elbo at C of that step); None: the beta = 1 ELBO.
    """
    model = model.eval()
    terms = elbo_terms(model, x_test, device=device, model_cfg=model_cfg, step=step)
    ll = metrics.evaluate_likelihood(model, x_test[:n_likelihood], k=k, batch_size=ll_batch, k_chunk=k_chunk,
                                     device=device)
    mu = metrics.posterior_means(model, x_test, device=device)
    active = metrics.active_units(mu)
    return {**terms, "bpd_elbo": metrics.bits_per_dim(-terms["elbo"]), "log_px_k": ll["log_px_nats"],
            "bpd_k": ll["bpd"], "k_eval": k, "n_likelihood": ll["n_images"], "n_active": int(active.sum()),
            "latent_dim": len(active), "mse": metrics.reconstruction_error(model, x_test, device=device),
            "unit_variance": mu.var(0).tolist()}


def trend_verdict(ks: Sequence[int], values: Sequence[float]) -> str:
    """Whether values (ordered by k) rise with k: 'holds', 'holds only weakly' (ties) or 'does not hold', with where."""
    if len(values) < 2:
        return "cannot be checked with one k"
    pairs = list(zip(ks, ks[1:], values, values[1:]))
    falls = [f"k={a} -> {b}" for a, b, before, after in pairs if after < before]
    ties = [f"k={a} -> {b}" for a, b, before, after in pairs if after == before]
    if falls:
        return f"does not hold (falls from {', '.join(falls)})"
    return f"holds only weakly (no change from {', '.join(ties)})" if ties else "holds (rises at every larger k)"


def iwae_k_claims(rows: list[dict], k_eval: int) -> str:
    """Burda et al.'s two claims checked on IWAE rows (keys k, log_px_k, train_bound, n_active), ordered by k:
    (a) a tighter bound with larger k (the test L_{k_eval} and the last logged training L_k rise with k) and
    (b) more active units with larger k. One sentence of verdicts computed from the numbers."""
    rows = sorted(rows, key=lambda r: r["k"])
    ks = [r["k"] for r in rows]

    def claim(key: str, spec: str, unit: str = "") -> str:
        values = [r[key] for r in rows]
        return " -> ".join(format(v, spec) for v in values) + f"{unit}: {trend_verdict(ks, values)}"

    return (f"IWAE k = {ks}: (a) tighter bound with larger k: test L_{k_eval} {claim('log_px_k', '.1f', ' nats')}; "
            f"training bound L_k {claim('train_bound', '.1f', ' nats')}; (b) more active units with larger k: "
            f"{claim('n_active', 'd')}.")
