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

from .data import N_LEVELS

HALF_BIN = 1.0 / (2 * (N_LEVELS - 1))  # half the width of one level's bin for x in [0, 1]
LOG_2PI = math.log(2 * math.pi)
MIN_LOG_SCALE = -7.0  # floor on a decoder's log-scale (far below one bin) for stable gradients


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
        return 0.5 * (self.mu**2 + self.logvar.exp() - 1.0 - self.logvar).sum(-1)

    def detach(self) -> DiagonalGaussian:
        """The same distribution with its parameters cut from the graph (DReG's stop-gradient on q)."""
        return DiagonalGaussian(self.mu.detach(), self.logvar.detach())


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dim: (..., L) -> (...)."""
    return -0.5 * (LOG_2PI + z**2).sum(-1)


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
    ratio = torch.exp(small - big)  # in [0, 1]
    mass = big + torch.log1p(-ratio.clamp(max=1 - 1e-6))
    density = log_pdf(centre) - log_scale + math.log(2 * HALF_BIN)
    middle = torch.where(ratio > 1 - 1e-4, density, mass)
    return torch.where(x < HALF_BIN, log_cdf(upper), torch.where(x > 1 - HALF_BIN, log_sf(lower), middle))


def discretized_gaussian_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """log P(x) per subpixel under N(mean, exp(log_scale)^2) integrated over the level's bin; x in [0, 1]."""
    return _discrete_log_prob(
        x,
        torch.special.log_ndtr,
        lambda u: torch.special.log_ndtr(-u),
        lambda u: -0.5 * (LOG_2PI + u**2),
        mean,
        log_scale,
    )


def discretized_logistic_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """log P(x) per subpixel under Logistic(mean, exp(log_scale)) integrated over the level's bin; x in [0, 1]."""
    logsigmoid = torch.nn.functional.logsigmoid
    return _discrete_log_prob(
        x,
        logsigmoid,
        lambda u: logsigmoid(-u),
        lambda u: u - 2 * torch.nn.functional.softplus(u),
        mean,
        log_scale,
    )


DISCRETE_LIKELIHOODS = {"gaussian": discretized_gaussian_log_prob, "logistic": discretized_logistic_log_prob}


def discretized_mean(mean: torch.Tensor) -> torch.Tensor:
    """The decoder's location snapped to the nearest of the 256 levels (for displaying reconstructions)."""
    return (mean.clamp(0, 1) * (N_LEVELS - 1)).round() / (N_LEVELS - 1)


# --- NVAE: elementwise Gaussians with a residual posterior, and the discretized mixture of logistics -------------
# Vahdat & Kautz (2020) eq. 2: q(z_l | x, z_<l) = N(mu_p + d_mu, sigma_p * exp(d_log_sigma)), so q = p exactly when
# the encoder's residual (d_mu, d_log_sigma) is zero. With the official code's soft clamp of means and log-scales,
# the residual is added to the prior's raw (unclamped) parameters and the sum is clamped once (lib.nets.nvae). DMOL (Salimans et al. 2017, PixelCNN++): per pixel a mixture
# of M components; channel c of component m is a discretized logistic with location mu_mc and log-scale s_mc, and
# green and blue locations depend linearly on the (8-bit) red and green values: mu_g + c0 x_r, mu_b + c1 x_r + c2 x_g.
# DMOL parameters: (B, 10 M, H, W) = [logits M | locations 3M | log-scales 3M | raw coefficients 3M], each
# 3M block ordered (M, 3 channels); locations in data units ([0, 1]), coefficients tanh-squashed.


class Normal:
    """Elementwise N(mu, exp(log_sigma)^2) over any shape; nothing is summed."""

    def __init__(self, mu: torch.Tensor, log_sigma: torch.Tensor):
        self.mu, self.log_sigma = mu, log_sigma

    def sample(self, t: float = 1.0) -> torch.Tensor:
        """mu + t * sigma * noise (reparameterised); t < 1 is the temperature of NVAE's Sec. 5."""
        return self.mu + t * self.log_sigma.exp() * torch.randn_like(self.mu)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Elementwise log N(z; mu, sigma^2)."""
        return -0.5 * (LOG_2PI + ((z - self.mu) * (-self.log_sigma).exp()) ** 2) - self.log_sigma

    def kl(self, p: Normal) -> torch.Tensor:
        """Elementwise KL(self || p) = 1/2 (d^2 + r^2) - 1/2 - log r, d = (mu - mu_p) / sigma_p, r = sigma / sigma_p."""
        d = (self.mu - p.mu) * (-p.log_sigma).exp()
        log_r = self.log_sigma - p.log_sigma
        return 0.5 * (d**2 + (2 * log_r).exp()) - 0.5 - log_r

    def float(self) -> Normal:
        return Normal(self.mu.float(), self.log_sigma.float())


def residual_normal(p: Normal, d_mu: torch.Tensor, d_log_sigma: torch.Tensor) -> Normal:
    """NVAE eq. 2: the posterior as a shift d_mu and log-scale change d_log_sigma of the prior p."""
    return Normal(p.mu + d_mu, p.log_sigma + d_log_sigma)


def dmol_split(params: torch.Tensor, n_mix: int):
    """(logits (B, M, H, W), locations, log-scales (floored), coefficients in (-1, 1)); the last three are
    (B, M, 3, H, W)."""
    b, _, h, w = params.shape
    rest = params[:, n_mix:].reshape(b, 3, n_mix, 3, h, w)  # (B, kind, M, channel, H, W)
    means, log_scales, coeffs = rest.unbind(1)
    return params[:, :n_mix], means, log_scales.clamp(min=MIN_LOG_SCALE), torch.tanh(coeffs)


def _coupled(means: torch.Tensor, coeffs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """PixelCNN++ eq. 3: green and blue locations shifted by the pixel's red (and green) values. x (B, 3, H, W)."""
    red, green = x[:, None, 0], x[:, None, 1]  # (B, 1, H, W)
    return torch.stack(
        [
            means[:, :, 0],
            means[:, :, 1] + coeffs[:, :, 0] * red,
            means[:, :, 2] + coeffs[:, :, 1] * red + coeffs[:, :, 2] * green,
        ],
        dim=2,
    )


def dmol_component_log_prob(
    x: torch.Tensor, params: torch.Tensor, n_mix: int, coupling: bool = True
) -> torch.Tensor:
    """log P(x_c | component m[, x_<c]) per component and channel, (B, M, 3, H, W); x (B, 3, H, W) on the levels."""
    _, means, log_scales, coeffs = dmol_split(params, n_mix)
    if coupling:
        means = _coupled(means, coeffs, x)
    return discretized_logistic_log_prob(x.unsqueeze(1), means, log_scales)


def dmol_log_prob(x: torch.Tensor, params: torch.Tensor, n_mix: int, coupling: bool = True) -> torch.Tensor:
    """log P(pixel) under the mixture, (B, H, W): logsumexp_m [log pi_m + sum_c log P(x_c | m, x_<c)]."""
    per_channel = dmol_component_log_prob(x, params, n_mix, coupling).sum(2)  # (B, M, H, W)
    return torch.logsumexp(per_channel + torch.log_softmax(params[:, :n_mix], dim=1), dim=1)


def _pick(values: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
    """The chosen component's entry: values (B, M, 3, H, W), one_hot (B, M, 1, H, W) -> (B, 3, H, W)."""
    return (values * one_hot).sum(1)


def _to_level(v: torch.Tensor) -> torch.Tensor:
    """A continuous draw mapped to its bin's level; the edge bins reach to -inf / +inf, hence the clamp."""
    return (v.clamp(0, 1) * (N_LEVELS - 1)).round() / (N_LEVELS - 1)


@torch.no_grad()
def dmol_sample(params: torch.Tensor, n_mix: int, coupling: bool = True) -> torch.Tensor:
    """Exact draws from the discretized mixture, (B, 3, H, W) on the 256 levels in [0, 1]."""
    logits, means, log_scales, coeffs = dmol_split(params.float(), n_mix)
    gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-10, 1 - 1e-7)))
    one_hot = torch.nn.functional.one_hot((logits + gumbel).argmax(1), n_mix).permute(0, 3, 1, 2).unsqueeze(2)
    mean, scale, c = _pick(means, one_hot), _pick(log_scales, one_hot).exp(), _pick(coeffs, one_hot)
    u = torch.rand_like(mean).clamp(1e-7, 1 - 1e-7)
    noise = scale * (torch.log(u) - torch.log1p(-u))  # logistic draws, scaled
    red = _to_level(mean[:, 0] + noise[:, 0])
    green = _to_level(mean[:, 1] + c[:, 0] * red + noise[:, 1])
    blue = _to_level(mean[:, 2] + c[:, 1] * red + c[:, 2] * green + noise[:, 2])
    return torch.stack([red, green, blue], dim=1)


@torch.no_grad()
def dmol_mean(params: torch.Tensor, n_mix: int, coupling: bool = True) -> torch.Tensor:
    """The mixture's mean locations (coupling applied to the red/green means), (B, 3, H, W) clamped to [0, 1]."""
    logits, means, _, coeffs = dmol_split(params.float(), n_mix)
    weights = torch.softmax(logits, dim=1).unsqueeze(2)  # (B, M, 1, H, W)
    x = (weights * means).sum(1).clamp(0, 1)
    if coupling:
        x = (weights * _coupled(means, coeffs, x)).sum(1).clamp(0, 1)
        x = (weights * _coupled(means, coeffs, x)).sum(1).clamp(0, 1)  # blue sees the coupled green
    return x
