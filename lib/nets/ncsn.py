"""Score networks s_theta(x, sigma) ~ grad_x log p_sigma(x), each returning a tensor shaped like x.

* `ScoreUNet` (the default): a DDPM-style U-Net conditioned on log sigma through Gaussian Fourier features,
  GroupNorm, SiLU, residual blocks, self-attention at 16x16 and skip connections between the two halves.
* `RefineNet`: the network of Song & Ermon (2019, "NCSN", Appendix B.1, CondRefineNetDilated): RefineNet
  cascades over a dilated residual encoder, conditional instance norm++ looked up by the noise `level`, ELU.

Inputs are centred images (the model maps x in [0, 1] to 2x - 1 at the point of use). `ScoreUNet` reads the
noise level `sigma` (B,) float; `RefineNet` reads its index `level` (B,) long; `conditioning` says which.
Neither divides by sigma: the model applies NCSNv2's technique 3 (output / sigma) when configured.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fast_layers import max_pool_5x5
from .layers import AttnBlock, CondInstanceNorm2dPlus, GaussianFourierProjection, ResBlock, group_norm


class ScoreUNet(nn.Module):
    """U-Net score model: (x (B, 3, H, W), sigma (B,)) -> score (B, 3, H, W)."""

    conditioning = "sigma"
    # channels-last under TrainConfig.channels_last="auto": off. Its GroupNorms convert layouts twice each (torch
    # 2.11, issue 23). Measured on the loop's own step (lib.train.loop, as lib.bench times it) on a 2-core Xeon
    # with AMX, one thread, nf=32, batch 16, CPU time per image: bf16 15.1 ms NCHW vs 16.2 ms channels-last
    # (fp32: 24.0 vs 20.2). channels_last="on" still forces it.
    channels_last_auto = False

    def __init__(
        self,
        nf: int = 128,
        ch_mult: tuple[int, ...] = (1, 2, 2, 2),
        n_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (16,),
        dropout: float = 0.1,
        resolution: int = 32,
        in_ch: int = 3,
        fourier_scale: float = 16.0,
    ):
        super().__init__()
        emb_dim = 4 * nf
        self.embed = nn.Sequential(
            GaussianFourierProjection(nf // 2, fourier_scale),
            nn.Linear(2 * (nf // 2), emb_dim),
            nn.SiLU(),
            nn.Linear(emb_dim, emb_dim),
        )
        self.conv_in = nn.Conv2d(in_ch, nf, 3, padding=1)
        self.down, skips, ch, res = nn.ModuleList(), [nf], nf, resolution
        for i, mult in enumerate(ch_mult):
            for _ in range(n_res_blocks):
                self.down.append(self._level_block(ch, nf * mult, emb_dim, dropout, res in attn_resolutions))
                ch = nf * mult
                skips.append(ch)
            if i < len(ch_mult) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))  # halve the resolution
                skips.append(ch)
                res //= 2
        self.mid = nn.ModuleList(
            [ResBlock(ch, ch, emb_dim, dropout), AttnBlock(ch), ResBlock(ch, ch, emb_dim, dropout)]
        )
        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(ch_mult))):
            for _ in range(n_res_blocks + 1):  # one more block per level: it takes the downsampler's skip
                attn = res in attn_resolutions
                self.up.append(self._level_block(ch + skips.pop(), nf * mult, emb_dim, dropout, attn))
                ch = nf * mult
            if i > 0:
                self.up.append(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)
                    )
                )
                res *= 2
        self.norm_out, self.conv_out = group_norm(ch), nn.Conv2d(ch, in_ch, 3, padding=1)

    @staticmethod
    def _level_block(in_ch, out_ch, emb_dim, dropout, attn):
        return nn.ModuleList(
            [ResBlock(in_ch, out_ch, emb_dim, dropout)] + ([AttnBlock(out_ch)] if attn else [])
        )

    @staticmethod
    def _run_block(block, h, emb):
        if isinstance(block, nn.ModuleList):  # ResBlock (+ attention)
            h = block[0](h, emb)
            return block[1](h) if len(block) > 1 else h
        return block(h)  # down- or upsampler

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        emb = self.embed(sigma.log())  # the noise level enters as log sigma: the ladder is geometric
        hs = [self.conv_in(x)]
        for block in self.down:
            hs.append(self._run_block(block, hs[-1], emb))
        h = self.mid[2](self.mid[1](self.mid[0](hs[-1], emb)), emb)
        for block in self.up:
            if isinstance(block, nn.ModuleList):
                h = torch.cat([h, hs.pop()], dim=1)  # skip connection from the matching encoder stage
            h = self._run_block(block, h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))


def _conv3x3(in_ch: int, out_ch: int, dilation: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=bias)


class ConvMeanPool(nn.Module):
    """Convolution then 2x2 average pooling (the NCSN code's downsampler)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)

    def forward(self, x):
        return F.avg_pool2d(self.conv(x), 2)


class CondResBlock(nn.Module):
    """Pre-activation residual block with CIN++; `down` halves the resolution, unless dilated (then it keeps it)."""

    def __init__(self, in_ch: int, out_ch: int, n_classes: int, down: bool = False, dilation: int = 1):
        super().__init__()
        self.norm1 = CondInstanceNorm2dPlus(in_ch, n_classes)
        mid = in_ch if down else out_ch
        self.conv1 = _conv3x3(in_ch, mid, dilation)
        self.norm2 = CondInstanceNorm2dPlus(mid, n_classes)
        pool = down and dilation == 1
        self.conv2 = ConvMeanPool(mid, out_ch) if pool else _conv3x3(mid, out_ch, dilation)
        if pool:
            self.shortcut = ConvMeanPool(in_ch, out_ch, kernel=1)
        elif dilation > 1 and (down or in_ch != out_ch):
            self.shortcut = _conv3x3(in_ch, out_ch, dilation)
        else:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x, level):
        h = self.conv1(F.elu(self.norm1(x, level)))
        h = self.conv2(F.elu(self.norm2(h, level)))
        return self.shortcut(x) + h


class CondRCU(nn.Module):
    """Residual conv units: n_blocks x (n_stages x (CIN++, ELU, conv)), each block residual."""

    def __init__(self, ch: int, n_blocks: int, n_stages: int, n_classes: int):
        super().__init__()
        self.n_stages = n_stages
        self.norms = nn.ModuleList(CondInstanceNorm2dPlus(ch, n_classes) for _ in range(n_blocks * n_stages))
        self.convs = nn.ModuleList(_conv3x3(ch, ch, bias=False) for _ in range(n_blocks * n_stages))

    def forward(self, x, level):
        for i, (norm, conv) in enumerate(zip(self.norms, self.convs)):
            if i % self.n_stages == 0:
                residual = x  # the block's input, added back after its last stage
            x = conv(F.elu(norm(x, level)))
            x = x + residual if i % self.n_stages == self.n_stages - 1 else x
        return x


class CondCRP(nn.Module):
    """Chained residual pooling: repeated (CIN++, 5x5 max-pool, conv), each stage added to the output."""

    def __init__(self, ch: int, n_stages: int, n_classes: int):
        super().__init__()
        self.norms = nn.ModuleList(CondInstanceNorm2dPlus(ch, n_classes) for _ in range(n_stages))
        self.convs = nn.ModuleList(_conv3x3(ch, ch, bias=False) for _ in range(n_stages))

    def forward(self, x, level):
        x = path = F.elu(x)
        for norm, conv in zip(self.norms, self.convs):
            path = conv(max_pool_5x5(norm(path, level)))
            x = path + x
        return x


class CondRefineBlock(nn.Module):
    """RefineNet block: adapt each input (RCU), fuse them at the largest size (MSF), pool (CRP), output RCU."""

    def __init__(self, in_chs: list[int], features: int, n_classes: int, end: bool = False):
        super().__init__()
        self.adapt = nn.ModuleList(CondRCU(ch, 2, 2, n_classes) for ch in in_chs)
        self.msf_norms = nn.ModuleList(CondInstanceNorm2dPlus(ch, n_classes) for ch in in_chs)
        self.msf_convs = nn.ModuleList(_conv3x3(ch, features) for ch in in_chs)
        self.crp = CondCRP(features, 2, n_classes)
        self.out = CondRCU(features, 3 if end else 1, 2, n_classes)
        self.single = len(in_chs) == 1

    def forward(self, xs: list[torch.Tensor], level, size) -> torch.Tensor:
        hs = [adapt(x, level) for adapt, x in zip(self.adapt, xs)]
        if self.single:
            h = hs[0]
        else:  # multi-resolution fusion
            h = sum(
                F.interpolate(conv(norm(x, level)), size=size, mode="bilinear", align_corners=True)
                for norm, conv, x in zip(self.msf_norms, self.msf_convs, hs)
            )
        return self.out(self.crp(h, level), level)


class RefineNet(nn.Module):
    """NCSN's CondRefineNetDilated: (x (B, 3, H, W), level (B,) long) -> score (B, 3, H, W); ~30M params at nf=128."""

    conditioning = "level"
    # channels-last under TrainConfig.channels_last="auto": off. InstanceNorm++ converts layouts twice per norm;
    # measured as for ScoreUNet (nf=32, batch 16, one thread): bf16 44.7 ms NCHW vs 52.1 ms channels-last per image
    # (fp32: 68.9 vs 76.7). "on" still forces it.
    channels_last_auto = False

    def __init__(self, nf: int = 128, n_classes: int = 10, in_ch: int = 3):
        super().__init__()
        self.begin = nn.Conv2d(in_ch, nf, 3, padding=1)
        c2 = 2 * nf
        self.res = nn.ModuleList(
            [
                nn.ModuleList([CondResBlock(nf, nf, n_classes), CondResBlock(nf, nf, n_classes)]),
                nn.ModuleList([CondResBlock(nf, c2, n_classes, down=True), CondResBlock(c2, c2, n_classes)]),
                nn.ModuleList(
                    [
                        CondResBlock(c2, c2, n_classes, down=True, dilation=2),
                        CondResBlock(c2, c2, n_classes, dilation=2),
                    ]
                ),
                nn.ModuleList(
                    [
                        CondResBlock(c2, c2, n_classes, down=True, dilation=4),
                        CondResBlock(c2, c2, n_classes, dilation=4),
                    ]
                ),
            ]
        )
        self.refine = nn.ModuleList(
            [
                CondRefineBlock([c2], c2, n_classes),
                CondRefineBlock([c2, c2], c2, n_classes),
                CondRefineBlock([c2, c2], nf, n_classes),
                CondRefineBlock([nf, nf], nf, n_classes, end=True),
            ]
        )
        self.norm_out = CondInstanceNorm2dPlus(nf, n_classes)
        self.end = nn.Conv2d(nf, in_ch, 3, padding=1)

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        h, layers = self.begin(x), []
        for blocks in self.res:  # 32x32, then 16x16 (the dilated stages keep 16x16)
            for block in blocks:
                h = block(h, level)
            layers.append(h)
        h = self.refine[0]([layers[3]], level, layers[3].shape[2:])
        for refine, skip in zip(self.refine[1:], reversed(layers[:3])):
            h = refine([skip, h], level, skip.shape[2:])
        return self.end(F.elu(self.norm_out(h, level)))
