"""The model families and their registry. Each family lives in its own module, with its frozen `*Config`
dataclass, the model (net + loss + sampler behind `loss(x, step) -> (loss, stats)` and `sample(n)`) and its
named presets: `pixels` (the independent-pixels baseline), `ncsn`, `vae` (Beta-VAE and IWAE) and `nvae`.

`MODELS` maps the CLI's and the results files' model names to a `ModelSpec` (config class, builder, presets);
`build` makes a seeded model from a config and `config_from_dict` reads a stored one back. Training and
loading runs is lib.workbook.training's concern: a family module imports the training config, never the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import nn

from . import ncsn, nvae, pixels, vae
from .ncsn import NCSN, NCSNConfig, ncsnv2_config
from .nvae import NVAE, NVAEConfig, reestimate_bn
from .pixels import IndependentPixels, IndependentPixelsConfig
from .vae import (
    IWAE,
    VAE,
    BetaVAE,
    BetaVAEConfig,
    IWAEConfig,
    beta_vae_tag,
    beta_vae_terms,
    check_beta_sweep,
    objective_name,
)


@dataclass(frozen=True)
class ModelSpec:
    """What the CLI and the notebooks need to build a model family: its config class, builder and presets."""

    config: type
    build: type
    presets: dict = field(default_factory=dict)  # name -> (model config, TrainConfig); first: the default


MODELS: dict[str, ModelSpec] = {
    "pixels": ModelSpec(IndependentPixelsConfig, IndependentPixels, pixels.PRESETS),
    "ncsn": ModelSpec(NCSNConfig, NCSN, ncsn.PRESETS),
    "beta_vae": ModelSpec(BetaVAEConfig, BetaVAE, vae.BETA_VAE_PRESETS),
    "iwae": ModelSpec(IWAEConfig, IWAE, vae.IWAE_PRESETS),
    "nvae": ModelSpec(NVAEConfig, NVAE, nvae.PRESETS),
}


def spec(name: str) -> ModelSpec:
    """MODELS[name], or a clear error listing the families."""
    if name not in MODELS:
        raise KeyError(f"unknown model family {name!r}; the workbook has {list(MODELS)}")
    return MODELS[name]


def build(name: str, cfg, seed: int | None = None) -> nn.Module:
    """A fresh `name` model from config `cfg`; `seed` fixes its initial weights."""
    if seed is not None:
        torch.manual_seed(seed)
    return spec(name).build(cfg)


def config_from_dict(name: str, stored: dict):
    """The family's config from a stored dict; keys that are not config fields (the CLI adds the data copy and
    split, the notebooks the family's name) are ignored."""
    config_class = spec(name).config
    names = {f.name for f in fields(config_class)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in names}
    return config_class(**values)


__all__ = [
    "MODELS",
    "ModelSpec",
    "build",
    "config_from_dict",
    "spec",
    "IndependentPixels",
    "IndependentPixelsConfig",
    "NCSN",
    "NCSNConfig",
    "ncsnv2_config",
    "VAE",
    "BetaVAE",
    "BetaVAEConfig",
    "IWAE",
    "IWAEConfig",
    "beta_vae_tag",
    "beta_vae_terms",
    "check_beta_sweep",
    "objective_name",
    "NVAE",
    "NVAEConfig",
    "reestimate_bn",
]
