"""Distributions for the latent-variable models: the diagonal Gaussian posterior q(z|x) and prior p(z), and decoder
likelihoods p(x|z) that are proper discrete distributions over the 256 levels of an 8-bit subpixel.

Symbols: `z` a latent (..., L); `mu`, `logvar` the Gaussian's mean and log-variance; `x` data in [0, 1] whose
values are the levels k / 255, k = 0..255; `mean`, `log_scale` a decoder's per-subpixel location and log-scale.

Why discrete likelihoods. A continuous density on 8-bit data can grow without bound (put all mass on the levels);
integrating it over each level's bin [x - 1/510, x + 1/510] (the edge bins extended to -inf / +inf, PixelCNN++,
Salimans et al. 2017) gives probabilities that sum to 1 over the 256 values, so -log p(x) is a code length and
bits/dim = NLL / (3072 ln 2) compares across models (Beta-VAE, IWAE and NVAE here).

MSE and a fixed-variance Gaussian. -log N(x; mean, sigma^2 I) = ||x - mean||^2 / (2 sigma^2) + (D/2) log(2 pi sigma^2),
so minimising  sum-MSE + beta * KL  is the same as maximising a beta = 1 ELBO with a Gaussian decoder of fixed
variance sigma^2 = beta / 2: a larger beta is a blurrier (noisier) decoder, and beta and sigma^2 trade off
one-for-one. Learning the scale (as the decoders here do) removes that hidden knob, so beta alone sets the
KL weight. A mixture of discretized logistics (NVAE's DMOL) belongs in this module too.
"""
from __future__ import annotations

import math

import torch

N_LEVELS = 256                     # values of an 8-bit subpixel
HALF_BIN = 1.0 / (2 * (N_LEVELS - 1))  # half the width of one level's bin for x in [0, 1]
LOG_2PI = math.log(2 * math.pi)
MIN_LOG_SCALE = -7.0               # floor on a decoder's log-scale (far below one bin) for stable gradients


class DiagonalGaussian:
    """N(mu, diag(exp(logvar))) over the last dimension; log_prob and kl sum over it."""

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor):
        self.mu, self.logvar = mu, logvar

    @property
    def std(self) -> torch.Tensor:
        return (0.5 * self.logvar).exp()

    def rsample(self, n: int | None = None) -> torch.Tensor:
        """Reparameterised z = mu + std * noise: shaped like mu, or (n, *mu.shape) when n is given."""
        shape = self.mu.shape if n is None else (n, *self.mu.shape)
        return self.mu + self.std * torch.randn(shape, device=self.mu.device, dtype=self.mu.dtype)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; mu, sigma^2) summed over the last dim; z (..., L) broadcasts against mu -> (...)."""
        return (-0.5 * (LOG_2PI + self.logvar + (z - self.mu) ** 2 / self.logvar.exp())).sum(-1)

    def kl_standard_normal(self) -> torch.Tensor:
        """KL(q || N(0, I)) in closed form, 1/2 sum(mu^2 + sigma^2 - 1 - log sigma^2) (Kingma & Welling 2014, App. B)."""
        return 0.5 * (self.mu ** 2 + self.logvar.exp() - 1.0 - self.logvar).sum(-1)

    def detach(self) -> "DiagonalGaussian":
        """The same distribution with its parameters cut from the graph (DReG's stop-gradient on q)."""
        return DiagonalGaussian(self.mu.detach(), self.logvar.detach())


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dim: (..., L) -> (...)."""
    return -0.5 * (LOG_2PI + z ** 2).sum(-1)


def _discrete_log_prob(x, log_cdf, log_sf, log_pdf, mean, log_scale) -> torch.Tensor:
    """Per-subpixel log P(level of x) for a continuous law with the given log-CDF / log-survival / log-density.

    The mass of a bin is CDF(upper) - CDF(lower), computed from whichever tail the bin lies in so that it does not
    cancel; the edge bins use log CDF(upper) and log SF(lower). Where the bin is so narrow against the scale that
    the difference loses precision, the density at the bin centre times the bin width stands in (PixelCNN++).
    """
    log_scale = log_scale.clamp(min=MIN_LOG_SCALE)
    inv_scale = (-log_scale).exp()
    centre = (x - mean) * inv_scale
    upper, lower = centre + HALF_BIN * inv_scale, centre - HALF_BIN * inv_scale
    right = centre > 0  # bins right of the mode: SF(lower) - SF(upper) avoids 1 - 1 cancellation
    big = torch.where(right, log_sf(lower), log_cdf(upper))
    small = torch.where(right, log_sf(upper), log_cdf(lower))
    ratio = torch.exp(small - big)                        # in [0, 1]
    mass = big + torch.log1p(-ratio.clamp(max=1 - 1e-6))
    density = log_pdf(centre) - log_scale + math.log(2 * HALF_BIN)
    middle = torch.where(ratio > 1 - 1e-4, density, mass)
    return torch.where(x < HALF_BIN, log_cdf(upper), torch.where(x > 1 - HALF_BIN, log_sf(lower), middle))


def discretized_gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) per subpixel under N(mean, exp(log_scale)^2) integrated over the level's bin; x in [0, 1]."""
    return _discrete_log_prob(x, torch.special.log_ndtr, lambda u: torch.special.log_ndtr(-u),
                              lambda u: -0.5 * (LOG_2PI + u ** 2), mean, log_scale)


def discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) per subpixel under Logistic(mean, exp(log_scale)) integrated over the level's bin; x in [0, 1]."""
    logsigmoid = torch.nn.functional.logsigmoid
    return _discrete_log_prob(x, logsigmoid, lambda u: logsigmoid(-u),
                              lambda u: u - 2 * torch.nn.functional.softplus(u), mean, log_scale)


DISCRETE_LIKELIHOODS = {"gaussian": discretized_gaussian_log_prob, "logistic": discretized_logistic_log_prob}


def discretized_mean(mean: torch.Tensor) -> torch.Tensor:
    """The decoder's location snapped to the nearest of the 256 levels (for displaying reconstructions)."""
    return (mean.clamp(0, 1) * (N_LEVELS - 1)).round() / (N_LEVELS - 1)
