"""The model families and their registry. Each family lives in its own module, with its frozen `*Config`
dataclass, the model (net + loss + sampler behind `loss(x, step) -> (loss, stats)` and `sample(n)`) and its
named presets: `pixels` (the independent-pixels baseline), `ncsn`, `vae` (Beta-VAE and IWAE) and `nvae`.

`MODELS` maps the CLI's and the results files' model names to a `ModelSpec` (config class, builder, presets);
`build` makes a seeded model from a config, `load_run_model` reads a run's EMA weights back, and
`train_or_load` trains a model or loads its finished run (what the notebooks do for every family).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import list_checkpoints, load_checkpoint
from ..train import TrainConfig, TrainResult, train
from . import ncsn, nvae, pixels, vae
from .ncsn import NCSN, NCSNConfig, ncsnv2_config
from .nvae import NVAE, NVAEConfig, reestimate_bn, temperature_rows
from .pixels import IndependentPixels, IndependentPixelsConfig
from .vae import (VAE, BetaVAE, BetaVAEConfig, IWAE, IWAEConfig, beta_vae_tag, beta_vae_terms, check_beta_sweep,
                  objective_name)


@dataclass(frozen=True)
class ModelSpec:
    """What the CLI and the notebooks need to build a model family: its config class, builder and presets."""
    config: type
    build: type
    presets: dict = field(default_factory=dict)  # name -> (model config, TrainConfig); the first is the default


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


def load_run_model(folder: str | Path, model_name: str, device="cpu") -> tuple[nn.Module, dict]:
    """The EMA weights of the newest checkpoint in run `folder` as an eval-mode `model_name` model, and that
    checkpoint's step, wall_seconds, train_config and model_config; a missing checkpoint or config is a clear error."""
    found = list_checkpoints(folder) if Path(folder).is_dir() else []
    if not found:
        raise FileNotFoundError(f"no checkpoint in {folder}: run the training that writes it first")
    state = load_checkpoint(found[-1], device)
    if not state.get("model_config"):
        raise ValueError(f"{found[-1]} holds no model_config, so its architecture is unknown: train with "
                         "train(..., model_config=asdict(cfg)) as the notebooks and the CLI do")
    model = spec(model_name).build(config_from_dict(model_name, state["model_config"])).to(device)
    model.load_state_dict(state["ema"])
    return model.eval(), {key: state[key] for key in ("step", "wall_seconds", "train_config", "model_config")}


def train_or_load(name: str, model_cfg, train_cfg: TrainConfig, x_train, run, device, data: str = "",
                  seed: int = 0, continue_training: bool = True, init_from=None, **extra) -> TrainResult:
    """Build MODELS[name] from model_cfg (weights seeded by `seed`) and train it on uint8 images x_train, or load
    the run when it has finished. continue_training=False loads an existing checkpoint as it is (a wall-time
    budgeted run would otherwise train for another budget each time the notebook runs); init_from starts a new
    run from another run's weights (staged training). The stored model config holds the family's fields, the data
    copy, the number of training images and `extra` (e.g. the preset, the split): resuming or loading the run
    under any other value is refused (lib.run_folder.check_model_config)."""
    model = build(name, model_cfg, seed)
    stop_at = None if continue_training or not list_checkpoints(Path(run)) else 0
    return train(model, x_train, train_cfg, run, device=device, stop_at=stop_at, init_from=init_from,
                 model_config={"name": name, **extra, **asdict(model_cfg), "data": data, "n_train": len(x_train)})


__all__ = ["MODELS", "ModelSpec", "build", "config_from_dict", "load_run_model", "spec", "train_or_load",
           "IndependentPixels", "IndependentPixelsConfig", "NCSN", "NCSNConfig", "ncsnv2_config",
           "VAE", "BetaVAE", "BetaVAEConfig", "IWAE", "IWAEConfig", "beta_vae_tag", "beta_vae_terms",
           "check_beta_sweep", "objective_name", "NVAE", "NVAEConfig", "reestimate_bn", "temperature_rows"]
