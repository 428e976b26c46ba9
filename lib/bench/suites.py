"""What the benchmark measures per family: each net's model, its preset's TrainConfig and batch, the FLOPs of one
training step and one sampling evaluation, and the sampler it times. `SUITES[family](args)` lists the `Case`s;
tiny presets (args.tiny) rehearse the whole benchmark on a CPU in about a minute."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from .timing import iwae_eval_draw, ncsn_draw, prior_draw


@dataclass
class Case:
    net: str  # label in the report
    build: Callable  # () -> a fresh model (same seed: plain and fast start from the same weights)
    train_cfg: object  # the preset's TrainConfig (batch and speed switches are set per mode)
    batch: int  # training images per step
    evaluate: Callable  # (model, x (2, 3, 32, 32)) -> one sampling evaluation, for the FLOP count
    draw: Callable  # (model, mode, device) -> a draw() for timing.time_sampling
    notes: str = ""


def _seeded(make: Callable) -> Callable:
    def build():
        torch.manual_seed(0)
        return make()

    return build


def ncsn_cases(args) -> list[Case]:
    """The U-Net (reference preset) and the RefineNet (paper preset); tiny: both nets at the tiny preset's size."""
    from ..models import MODELS, NCSN
    from ..models.ncsn import NCSN_PAPER, NCSN_REFERENCE, NCSN_TINY

    presets = MODELS["ncsn"].presets
    nets = {
        "unet": (NCSN_TINY if args.tiny else NCSN_REFERENCE, presets["reference"][1]),
        "refinenet": (
            replace(NCSN_TINY, net="refinenet", nf=8) if args.tiny else NCSN_PAPER,
            presets["paper"][1],
        ),
    }
    cases = []
    for name in args.nets or nets:
        cfg, train_cfg = nets[name]
        cfg = replace(cfg, nf=args.nf) if args.nf else cfg
        cases.append(
            Case(
                name,
                _seeded(lambda cfg=cfg: NCSN(cfg)),
                train_cfg,
                args.batch or train_cfg.batch_size,
                lambda m, x: m.score(x, m.cfg.n_sigmas - 1),
                lambda m, mode, device: ncsn_draw(m, args.sample_batch, mode, not args.no_compile),
                f"sampling: NCSN.sample with one Langevin step per level, {cfg.n_sigmas} levels",
            )
        )
    return cases


def vae_cases(args) -> list[Case]:
    """Beta-VAE and IWAE at k = 1, 5, 50 (default presets; tiny: their tiny sizes); the IWAE k = 5 net also times
    the k = 5000 evaluation bound (images/s)."""
    from ..models import IWAE, MODELS, BetaVAE, BetaVAEConfig, IWAEConfig
    from ..models.vae import VAE_TINY

    size = VAE_TINY if args.tiny else {}
    nets = {"beta_vae": (lambda: BetaVAE(BetaVAEConfig(**size)), MODELS["beta_vae"].presets["default"][1])}
    for k in (1, 5, 50):
        nets[f"iwae_k{k}"] = (lambda k=k: IWAE(IWAEConfig(k=k, **size)), MODELS["iwae"].presets["default"][1])
    cases = []
    for name in args.nets or nets:
        make, train_cfg = nets[name]
        cases.append(
            Case(
                name,
                _seeded(make),
                train_cfg,
                args.batch or train_cfg.batch_size,
                lambda m, x: m.decode(torch.randn(len(x), m.latent_dim, device=x.device)),
                lambda m, mode, device: prior_draw(m, args.sample_batch, mode, device),
                "sampling: model.sample (one decoder pass per image)",
            )
        )
    if args.nets is None or "iwae_eval_k5000" in args.nets:
        make, train_cfg = nets["iwae_k5"]
        cases.append(
            Case(
                "iwae_eval_k5000",
                _seeded(make),
                train_cfg,
                0,
                lambda m, x: m.decode(torch.randn(len(x), m.latent_dim, device=x.device)),
                lambda m, mode, device: iwae_eval_draw(
                    m, torch.rand(args.eval_batch, 3, 32, 32, device=device), mode, device, k=args.eval_k
                ),
                f"evaluation: lib.metrics.importance_log_likelihood at k={args.eval_k}, sampling rate is "
                f"images/s; no training",
            )
        )
    return cases


def nvae_cases(args) -> list[Case]:
    """NVAE at the reference preset and at the size of the official code's small configuration; tiny: its tiny
    preset twice (so the rehearsal covers both rows)."""
    from ..models import MODELS

    presets = MODELS["nvae"].presets
    nets = {
        "nvae_reference": presets["tiny" if args.tiny else "reference"],
        "nvae_official_small": presets["tiny" if args.tiny else "official_small"],
    }
    cases = []
    for name in args.nets or nets:
        cfg, train_cfg = nets[name]
        cfg = replace(cfg, channels=args.nf) if args.nf else cfg
        cases.append(
            Case(
                name,
                _seeded(lambda cfg=cfg: MODELS["nvae"].build(cfg)),
                train_cfg,
                args.batch or train_cfg.batch_size,
                lambda m, x: m.net.top_down(n=len(x))[0],
                lambda m, mode, device: prior_draw(m, args.sample_batch, mode, device),
                "sampling: model.sample (one top-down pass per image)",
            )
        )
    return cases


SUITES: dict[str, Callable] = {"ncsn": ncsn_cases, "nvae": nvae_cases, "vae": vae_cases}
REFERENCE = {  # the figures each family's issue quotes for the reference implementations
    "ncsn": "NCSNv2 reference code on one H100 (RefineNet ~30M params, fp32, ~59 GFLOP/image/step): "
    "~1.5k img/s training (~90 TFLOP/s), ~4.4k image evaluations/s sampling",
    "nvae": "official NVAE code on one H100: CIFAR-10 config (131M params, batch 32, fp16) ~28 img/s "
    "(~5.6 TFLOP/s, 202 GFLOP/image/step); small config (2 scales, 64 channels, 3 groups/scale, "
    "16.7M params, batch 64) ~250 img/s (12.6 GFLOP/image/step)",
}
