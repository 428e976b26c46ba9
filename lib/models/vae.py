"""Beta-VAE and IWAE (Kingma & Welling 2014; Higgins et al. 2017; Burgess et al. 2018; Burda et al. 2016;
Tucker et al. 2019): one convolutional VAE, two objectives.

Symbols: `z` latent (..., L) with prior p(z) = N(0, I); `q` the encoder's DiagonalGaussian q(z|x); the decoder gives
each subpixel a location in (0, 1) and a learned per-channel scale under a discretized likelihood (lib.dists);
`k` samples per image; `log_w` = log p(x|z) + log p(z) - log q(z|x), (k, B). Numbers in nats per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..common.checks import check_field_types
from ..data import N_DIMS
from ..dists import DISCRETE_LIKELIHOODS, DiagonalGaussian, standard_normal_log_prob
from ..losses import beta_elbo, bits_per_dim, capacity_at, capacity_elbo, dreg_loss, iwae_bound, iwae_loss
from ..nets.vae import ConvDecoder, ConvEncoder
from ..train.config import TrainConfig


def _check_vae_config(cfg) -> None:
    """Shared validation of the VAE configs; errors name the field."""
    name = type(cfg).__name__
    if cfg.latent_dim < 1:
        raise ValueError(f"{name}.latent_dim must be >= 1, got {cfg.latent_dim}")
    if not cfg.widths or min(cfg.widths) < 1 or len(cfg.widths) > 5:
        raise ValueError(f"{name}.widths must be 1 to 5 positive channel counts, got {cfg.widths}")
    if cfg.likelihood not in DISCRETE_LIKELIHOODS:
        raise ValueError(
            f"{name}.likelihood must be one of {list(DISCRETE_LIKELIHOODS)}, got {cfg.likelihood!r}"
        )


@dataclass(frozen=True)
class BetaVAEConfig:
    latent_dim: int = 128  # L, size of z
    widths: tuple[int, ...] = (64, 128, 256, 512)  # encoder channels per stride-2 stage, mirrored
    likelihood: str = "logistic"  # discretized p(x|z): logistic | gaussian (lib.dists)
    beta: float = 1.0  # beta, the KL weight (Higgins et al. 2017); 1 = the ELBO
    capacity_max: float = 0.0  # C_max in nats (Burgess et al. 2018); 0 = plain beta-ELBO
    capacity_steps: int = 100_000  # steps over which C rises linearly from 0 to C_max
    gamma: float = 1000.0  # gamma, weight of |KL - C| in the capacity objective

    def __post_init__(self):
        check_field_types(self)  # ints, floats (finite), bools and strings of the annotated type
        _check_vae_config(self)
        for field_name in ("beta", "capacity_max", "gamma"):
            if getattr(self, field_name) < 0:
                raise ValueError(f"BetaVAEConfig.{field_name} must be >= 0, got {getattr(self, field_name)}")
        if self.capacity_steps < 1:
            raise ValueError(f"BetaVAEConfig.capacity_steps must be >= 1, got {self.capacity_steps}")


@dataclass(frozen=True)
class IWAEConfig:
    latent_dim: int = 128  # L, size of z
    widths: tuple[int, ...] = (64, 128, 256, 512)  # encoder channels per stride-2 stage, mirrored
    likelihood: str = "logistic"  # discretized p(x|z): logistic | gaussian (lib.dists)
    k: int = 5  # k, importance samples per image in the training bound
    objective: str = "iwae"  # iwae: L_k (Burda eq. 8) | vae: the mean of k ELBO samples
    dreg: bool = False  # encoder gradient by DReG (Tucker et al. 2019); iwae only

    def __post_init__(self):
        check_field_types(self)  # ints, floats (finite), bools and strings of the annotated type
        _check_vae_config(self)
        if self.k < 1:
            raise ValueError(f"IWAEConfig.k must be >= 1, got {self.k}")
        if self.objective not in ("iwae", "vae"):
            raise ValueError(f"IWAEConfig.objective must be 'iwae' or 'vae', got {self.objective!r}")
        if self.dreg and self.objective != "iwae":
            raise ValueError("IWAEConfig.dreg needs objective='iwae'")


class VAE(nn.Module):
    """Encoder q(z|x), prior N(0, I) and discretized decoder p(x|z): what Beta-VAE and IWAE share."""

    def __init__(self, latent_dim: int, widths, likelihood: str):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder, self.decoder = ConvEncoder(latent_dim, widths), ConvDecoder(latent_dim, widths)
        self.log_scale = nn.Parameter(torch.full((1, 3, 1, 1), -2.0))  # per-channel decoder log-scale
        self.likelihood = DISCRETE_LIKELIHOODS[likelihood]

    def posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """q(z|x) for x (B, 3, 32, 32) in [0, 1]; mu and logvar (B, L)."""
        mu, logvar = self.encoder(x)
        return DiagonalGaussian(mu.float(), logvar.float())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder locations in (0, 1): z (..., L) -> (..., 3, 32, 32)."""
        out = self.decoder(z.reshape(-1, self.latent_dim)).float().sigmoid()
        return out.view(*z.shape[:-1], 3, 32, 32)

    def log_px_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats per image: x (B, 3, 32, 32), z (..., B, L) -> (..., B)."""
        return self.likelihood(x, self.decode(z), self.log_scale).sum((-3, -2, -1))

    def log_weights(self, x: torch.Tensor, k: int, q: DiagonalGaussian | None = None, stop_q: bool = False):
        """(log_w (k, B), z (k, B, L)) with z ~ q(z|x); stop_q cuts q's parameters from log q (DReG)."""
        q = self.posterior(x) if q is None else q
        z = q.rsample(k)
        log_q = (q.detach() if stop_q else q).log_prob(z)
        return self.log_px_z(x, z) + standard_normal_log_prob(z) - log_q, z

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's locations at the posterior mean, (B, 3, 32, 32) in (0, 1)."""
        return self.decode(self.posterior(x).mu)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n prior samples shown as the decoder's locations (the usual VAE display, no pixel noise)."""
        return self.decode(torch.randn(n, self.latent_dim, device=self.log_scale.device))


def objective_name(cfg) -> str:
    """The name of what a VAE config trains: capacity_elbo (Burgess et al.) when cfg.capacity_max > 0, else
    beta_elbo (an IWAE config, or None, gets beta_elbo at beta = 1: the plain ELBO)."""
    return "capacity_elbo" if getattr(cfg, "capacity_max", 0.0) > 0 else "beta_elbo"


def beta_vae_terms(cfg, log_px_z: torch.Tensor, kl: torch.Tensor, step: int) -> dict:
    """Per-image (B,) terms of what BetaVAE trains on at `step` (reconstruction, kl, elbo and the objective under
    objective_name(cfg)): the beta-ELBO, or the capacity objective (beta unused) when cfg.capacity_max > 0.
    A config without beta (IWAE, None) gets the beta = 1 ELBO."""
    if objective_name(cfg) == "capacity_elbo":
        return capacity_elbo(log_px_z, kl, cfg.gamma, capacity_at(step, cfg.capacity_max, cfg.capacity_steps))
    return beta_elbo(log_px_z, kl, getattr(cfg, "beta", 1.0))


def beta_vae_tag(cfg: BetaVAEConfig) -> str:
    """The run and results name part of one Beta-VAE: beta<beta>, or capacity<C_max>-gamma<gamma> when the
    capacity objective is trained (beta unused), so a capacity run never reuses a beta run's folder."""
    if objective_name(cfg) == "capacity_elbo":
        return f"capacity{cfg.capacity_max:g}-gamma{cfg.gamma:g}"
    return f"beta{cfg.beta:g}"


def check_beta_sweep(betas, capacity_max: float) -> None:
    """Refuse a sweep that would train one model under several labels: the capacity objective ignores beta."""
    if capacity_max > 0 and len(set(betas)) > 1:
        raise ValueError(
            f"BETAS={list(betas)} with CAPACITY_MAX={capacity_max:g}: under the capacity objective (Burgess et al. "
            "2018) BetaVAE trains on E_q log p(x|z) - gamma |KL - C| and ignores beta, so these runs would be the same "
            "model labelled with different betas. Sweep one beta with capacity (e.g. BETAS=[1.0]), or set "
            "CAPACITY_MAX = 0 to sweep beta on the beta-ELBO."
        )


class BetaVAE(VAE):
    """The beta-ELBO (or Burgess et al.'s capacity objective) with one reparameterised z per image."""

    def __init__(self, cfg: BetaVAEConfig = BetaVAEConfig()):
        super().__init__(cfg.latent_dim, cfg.widths, cfg.likelihood)
        self.cfg = cfg

    def loss(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        q = self.posterior(x)
        terms = beta_vae_terms(self.cfg, self.log_px_z(x, q.rsample()), q.kl_standard_normal(), step)
        stats = {name: value.detach().mean() for name, value in terms.items()}
        stats["bpd_elbo"] = bits_per_dim(-stats["elbo"])
        return -terms[objective_name(self.cfg)].mean() / N_DIMS, stats  # nats per dim keeps the lr scale-free


class IWAE(VAE):
    """The k-sample importance-weighted bound (or the k-sample mean ELBO), optionally with DReG gradients."""

    def __init__(self, cfg: IWAEConfig = IWAEConfig()):
        super().__init__(cfg.latent_dim, cfg.widths, cfg.likelihood)
        self.cfg = cfg

    def loss(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        log_w, z = self.log_weights(x, self.cfg.k, stop_q=self.cfg.dreg)
        bound, elbo = iwae_bound(log_w.detach()), log_w.detach().mean(0)
        if self.cfg.objective == "vae":
            loss = -log_w.mean()
        else:
            loss = dreg_loss(log_w, z) if self.cfg.dreg else iwae_loss(log_w)
        stats = {"bound": bound.mean(), "elbo": elbo.mean(), "bpd_bound": bits_per_dim(-bound.mean())}
        return loss / N_DIMS, stats  # nats per dim keeps the lr scale-free


VAE_TINY = dict(latent_dim=8, widths=(8, 16, 32, 64))
TINY_TRAIN = TrainConfig(steps=20, batch_size=16, lr=1e-3, log_every=5, ckpt_every=10, n_samples=16)
BETA_VAE_PRESETS = {  # name -> (model config, TrainConfig)
    "default": (
        BetaVAEConfig(),
        TrainConfig(steps=50_000, batch_size=128, lr=1e-4, n_samples=64, ckpt_every=2000),
    ),
    "tiny": (BetaVAEConfig(**VAE_TINY), TINY_TRAIN),
}
IWAE_PRESETS = {
    "default": (
        IWAEConfig(),
        TrainConfig(steps=50_000, batch_size=64, lr=1e-4, n_samples=64, ckpt_every=2000),
    ),
    "tiny": (IWAEConfig(**VAE_TINY), TINY_TRAIN),
}
