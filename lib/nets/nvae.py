"""NVAE's network (Vahdat & Kautz 2020): a bottom-up encoder and a top-down decoder with latent groups at
several scales; the losses live in lib.losses / lib.dists and the model (loss, sampling) in lib.models.nvae.

Symbols: `z_l` the l-th latent group (B, latent_channels, r, r), ordered top-down (coarsest first); `p` the prior
p(z_l | z_<l) and `q` the posterior q(z_l | x, z_<l), both elementwise `Normal`s; `h` the decoder's state; `feats`
the encoder's features, one per group, bottom-up (finest first). Latent scales run from 16x16 (after the
stride-2 preprocessing) down by halves; channels double at each halving, as in the official code.
"""

from __future__ import annotations

import torch
from torch import nn

from ..dists import Normal, residual_normal
from .nvae_cells import DecoderCell, EncoderCell, Head, soft_clamp


def _clamped(mu: torch.Tensor, log_sigma: torch.Tensor) -> Normal:
    return Normal(soft_clamp(mu), soft_clamp(log_sigma))


class NVAENet(nn.Module):
    """x (B, 3, 32, 32) in [0, 1] -> (decoder output (B, out_channels, 32, 32), per-group (q, p, z))."""

    # channels-last under TrainConfig.channels_last="auto": on (CUDA). BatchNorm keeps the layout. Measured on the
    # loop's own step (lib.train.loop, as lib.bench times it) at the tiny preset on a 2-core Xeon with AMX, one
    # thread, batch 16, CPU time per image: bf16 12.7 ms NCHW vs 12.9 ms channels-last, fp32 13.1 vs 11.8, so no
    # cost on a CPU; cuDNN's tensor-core convolutions want NHWC. A GPU run of python -m lib.bench nvae should
    # confirm it; channels_last="off" turns it off.
    channels_last_auto = True

    def __init__(
        self,
        channels: int = 64,
        n_scales: int = 2,
        groups_per_scale: int = 3,
        latent_channels: int = 20,
        enc_cells: int = 2,
        dec_cells: int = 2,
        n_pre: int = 2,
        n_post: int = 2,
        expand: int = 6,
        res_scale: float = 0.1,
        out_channels: int = 100,
    ):
        super().__init__()
        self.n_scales, self.groups_per_scale, self.latent_channels = (
            n_scales,
            groups_per_scale,
            latent_channels,
        )
        self.widths = [channels * 2**s for s in range(n_scales)]  # per latent scale, finest (16x16) first
        n_groups = n_scales * groups_per_scale
        enc = lambda c, n: nn.Sequential(*[EncoderCell(c, c, res_scale=res_scale) for _ in range(n)])
        dec = lambda c, n: nn.Sequential(*[DecoderCell(c, c, expand, res_scale=res_scale) for _ in range(n)])
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.pre = nn.Sequential(enc(channels, n_pre - 1), EncoderCell(channels, channels, True, res_scale))
        self.enc_towers = nn.ModuleList(enc(self.widths[s], enc_cells) for s in self._bottom_up_scales())
        self.enc_down = nn.ModuleList(
            EncoderCell(self.widths[s], self.widths[s + 1], True, res_scale) for s in range(n_scales - 1)
        )
        top, side = self.widths[-1], 16 // 2 ** (n_scales - 1)
        self.h0 = nn.Parameter(torch.randn(1, top, side, side) * 0.1)  # the decoder's learned input
        scales = self._top_down_scales()
        self.dec_towers = nn.ModuleList(dec(self.widths[s], dec_cells) for s in scales[:-1])
        self.dec_up = nn.ModuleList(
            DecoderCell(self.widths[s + 1], self.widths[s], expand, True, res_scale)
            for s in reversed(range(n_scales - 1))
        )
        self.enc_combine = nn.ModuleList(nn.Conv2d(self.widths[s], self.widths[s], 1) for s in scales)
        self.post_heads = nn.ModuleList(
            Head(self.widths[s], 2 * latent_channels, zero_init=True) for s in scales
        )
        self.prior_heads = nn.ModuleList(
            Head(self.widths[s], 2 * latent_channels, zero_init=True) for s in scales[1:]
        )
        self.dec_combine = nn.ModuleList(
            nn.Conv2d(self.widths[s] + latent_channels, self.widths[s], 1) for s in scales
        )
        self.post = nn.Sequential(
            DecoderCell(channels, channels, expand, True, res_scale), dec(channels, n_post - 1)
        )
        self.out = Head(channels, out_channels)
        assert len(self.enc_towers) == n_groups

    def _bottom_up_scales(self) -> list[int]:
        return [s for s in range(self.n_scales) for _ in range(self.groups_per_scale)]

    def _top_down_scales(self) -> list[int]:
        return self._bottom_up_scales()[::-1]

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The bottom-up features, one per group, finest first."""
        h, feats = self.pre(self.stem(2 * x - 1)), []
        for j, tower in enumerate(self.enc_towers):
            h = tower(h)
            feats.append(h)
            last_of_scale = (j + 1) % self.groups_per_scale == 0
            if last_of_scale and j + 1 < len(self.enc_towers):
                h = self.enc_down[j // self.groups_per_scale](h)
        return feats

    def advance(self, h: torch.Tensor, i: int) -> torch.Tensor:
        """The decoder cells between group i - 1 and group i (with the 2x upsampling cell at a scale change)."""
        h = self.dec_towers[i - 1](h)
        if i % self.groups_per_scale == 0:
            h = self.dec_up[i // self.groups_per_scale - 1](h)
        return h

    def prior(self, h: torch.Tensor, i: int) -> tuple[Normal, Normal]:
        """p(z_i | z_<i) and its raw (unclamped) parameters: the standard normal for the top group, else from
        the decoder state."""
        if i == 0:
            zeros = torch.zeros(
                h.shape[0], self.latent_channels, *h.shape[2:], device=h.device, dtype=h.dtype
            )
            return Normal(zeros, zeros), Normal(zeros, zeros)
        raw = Normal(*self.prior_heads[i - 1](h).chunk(2, dim=1))
        return _clamped(raw.mu, raw.log_sigma), raw

    def top_down(self, feats: list[torch.Tensor] | None = None, n: int = 1, t: float = 1.0):
        """The decoder pass: posterior z's when feats are given, else n prior draws at temperature t.

        Returns the decoder output and, per group (top-down), (q or None, p, z)."""
        batch = feats[0].shape[0] if feats is not None else n
        h, groups = self.h0.expand(batch, -1, -1, -1), []
        for i in range(len(self.enc_towers)):
            if i > 0:
                h = self.advance(h, i)
            p, p_raw = self.prior(h, i)
            q = None
            if feats is not None:  # NVAE eq. 2: q is p shifted and rescaled by the encoder's residual
                d_mu, d_log_sigma = self.post_heads[i](feats[-1 - i] + self.enc_combine[i](h)).chunk(2, dim=1)
                # added to the prior's raw parameters and clamped once, as the official code does: clamping p
                # first and then the sum would make q differ from p even for a zero residual
                r = residual_normal(p_raw, d_mu, d_log_sigma)
                q = _clamped(r.mu, r.log_sigma)
            z = q.sample() if q is not None else p.sample(t)
            h = self.dec_combine[i](torch.cat([h, z.to(h.dtype)], dim=1))
            groups.append((q, p, z))
        h = self.post(h)
        # the head in fp32: bf16 keeps 8 significant bits, so a location near 0.5 would move by up to ~0.002, half
        # of a 1/255 bin of the discretized likelihood
        with torch.autocast(h.device.type, enabled=False):
            return self.out(h.float()), groups

    def forward(self, x: torch.Tensor):
        return self.top_down(self.encode(x))
