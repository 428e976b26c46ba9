"""A family's run as the notebooks use it: train it, or load it when it has finished, and read its EMA weights
back from the newest checkpoint."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from torch import nn

from ..models import build, config_from_dict, spec
from ..train.checkpoints import list_checkpoints, load_checkpoint
from ..train.config import TrainConfig
from ..train.loop import TrainResult, train


def load_run_model(folder: str | Path, model_name: str, device="cpu") -> tuple[nn.Module, dict]:
    """The EMA weights of the newest checkpoint in run `folder` as an eval-mode `model_name` model, and that
    checkpoint's step, wall_seconds, train_config and model_config; a missing checkpoint or config is a clear error."""
    found = list_checkpoints(folder) if Path(folder).is_dir() else []
    if not found:
        raise FileNotFoundError(f"no checkpoint in {folder}: run the training that writes it first")
    state = load_checkpoint(found[-1], device)
    if not state.get("model_config"):
        raise ValueError(
            f"{found[-1]} holds no model_config, so its architecture is unknown: train with "
            "train(..., model_config=asdict(cfg)) as the notebooks and the CLI do"
        )
    model = spec(model_name).build(config_from_dict(model_name, state["model_config"])).to(device)
    model.load_state_dict(state["ema"])
    return model.eval(), {key: state[key] for key in ("step", "wall_seconds", "train_config", "model_config")}


def run_record(name: str, model_cfg, x_train, data: str = "", **extra) -> dict:
    """The model config a run stores, which resuming or loading it must match: the family's name and fields, the
    data copy, the number of training images and `extra` (e.g. the preset, the split)."""
    return {"name": name, **extra, **asdict(model_cfg), "data": data, "n_train": len(x_train)}


def train_or_load(
    name: str,
    model_cfg,
    train_cfg: TrainConfig,
    x_train,
    run,
    device,
    data: str = "",
    seed: int = 0,
    continue_training: bool = True,
    init_from=None,
    stop_at: int | None = None,
    use_wandb: bool = True,
    **extra,
) -> TrainResult:
    """Build MODELS[name] from model_cfg (weights seeded by `seed`) and train it on uint8 images x_train, or load
    the run when it has finished. continue_training=False loads an existing checkpoint as it is (a wall-time
    budgeted run would otherwise train for another budget each time the notebook runs); init_from starts a new
    run from another run's weights (staged training); stop_at ends this session at that step, as in
    lib.train.train. The stored model config holds the family's fields, the data
    copy, the number of training images and `extra` (e.g. the preset, the split): resuming or loading the run
    under any other value is refused (lib.train.run_folder.check_model_config)."""
    if not continue_training and list_checkpoints(Path(run)):
        stop_at = 0
    return train(
        build(name, model_cfg, seed),
        x_train,
        train_cfg,
        run,
        device=device,
        stop_at=stop_at,
        init_from=init_from,
        model_config=run_record(name, model_cfg, x_train, data, **extra),
        use_wandb=use_wandb,
    )
