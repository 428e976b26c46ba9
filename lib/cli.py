"""`python -m lib.train MODEL [--preset NAME] [--key value ...]`: train outside notebooks.

Every `--key value` names a field of the model's config or of TrainConfig and is converted to that field's
type; a few options choose the data and the run. The same command runs under
`torchrun --nproc_per_node=N -m lib.train ...` (DistributedDataParallel, one data shard per process).
Notebooks later load the run folder this writes (outputs/runs/<run>/).
"""
from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import asdict, fields

import torch.distributed

from .data import load_cifar10
from .models import MODELS
from .runs import describe_device, pick_device, seed_everything
from .train import TrainConfig, distributed_context, train

OPTIONS = {  # run and data options that are not config fields: name -> (type, default, help)
    "preset": (str, None, "named preset of the model (model config + training config); default: its first"),
    "run_name": (str, None, "run folder under outputs/runs (default: MODEL-PRESET); not --run, which torchrun takes"),
    "data_root": (str, None, "CIFAR-10 folder (default: $CIFAR10_DIR, else data/cifar10)"),
    "split": (str, "fit", "training split: fit (45k, keeps val held out) or train (50k)"),
    "limit": (int, 0, "train on the first LIMIT images only; 0 = all"),
    "device": (str, None, "cuda | mps | cpu (default: the best available)"),
    "resume": (bool, True, "continue from the run folder's newest checkpoint"),
    "wandb": (bool, True, "mirror metrics to wandb when installed and WANDB_MODE is not disabled"),
}


class UsageError(ValueError):
    """A bad command line; the message says what was wrong and what is allowed."""


def parse_value(text: str, kind: typing.Any, name: str):
    """Convert `text` to the annotated type `kind` (int, float, bool, str, or Optional of one)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null"):
            return None
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"--{name} expects true or false, got {text!r}")
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise UsageError(f"--{name} expects {kind.__name__}, got {text!r}") from None


def split_pairs(args: list[str]) -> dict[str, str]:
    """['--a', '1', '--b=2'] -> {'a': '1', 'b': '2'}."""
    pairs, i = {}, 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise UsageError(f"expected --key value, got {arg!r}")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            i += 1
        elif i + 1 < len(args):
            key, value = arg[2:], args[i + 1]
            i += 2
        else:
            raise UsageError(f"--{arg[2:]} needs a value")
        pairs[key.replace("-", "_")] = value
    return pairs


def parse(argv: list[str]) -> tuple[str, dict, object, TrainConfig]:
    """argv -> (model name, options, model config, train config); raises UsageError or ValueError."""
    if not argv or argv[0].startswith("-"):
        raise UsageError(f"name a model first: python -m lib.train MODEL [--key value ...]; models: {list(MODELS)}")
    name, pairs = argv[0], split_pairs(argv[1:])
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of {list(MODELS)}")
    spec = MODELS[name]
    options = {k: parse_value(pairs.pop(k), t, k) if k in pairs else d for k, (t, d, _) in OPTIONS.items()}
    options["preset"] = options["preset"] or next(iter(spec.presets))  # "default" where a family has one
    if options["preset"] not in spec.presets:
        raise UsageError(f"unknown preset {options['preset']!r} for {name}; choose one of {list(spec.presets)}")
    model_cfg, train_cfg = spec.presets[options["preset"]]
    model_cfg = _override(model_cfg, pairs, pairs.keys() & _names(spec.config))
    train_cfg = _override(train_cfg, pairs, pairs.keys() & _names(TrainConfig))
    unknown = pairs.keys() - _names(spec.config) - _names(TrainConfig)
    if unknown:
        raise UsageError(f"unknown option(s) {sorted('--' + k for k in unknown)} for model {name}; known: "
                         f"{sorted(OPTIONS)} + model config {sorted(_names(spec.config))} "
                         f"+ TrainConfig {sorted(_names(TrainConfig))}")
    options["run_name"] = options["run_name"] or f"{name}-{options['preset']}"
    return name, options, model_cfg, train_cfg


def _names(config_class) -> set[str]:
    return {f.name for f in fields(config_class)}


def _override(cfg, pairs: dict, keys):
    """dataclasses.replace with values converted to each field's annotated type (validation runs again)."""
    hints = typing.get_type_hints(type(cfg))
    return dataclasses.replace(cfg, **{k: parse_value(pairs[k], hints[k], k) for k in keys})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__ + "\nOptions:\n" + "\n".join(f"  --{k}: {h} (default {d})" for k, (_, d, h) in OPTIONS.items()))
        return 0
    try:
        name, options, model_cfg, train_cfg = parse(argv)
    except ValueError as err:  # UsageError, or a config's own validation naming the field
        print(f"error: {err}", file=sys.stderr)
        return 2
    rank, _, world = distributed_context()
    cifar = load_cifar10(options["data_root"])
    x, _ = cifar.split(options["split"], limit=options["limit"] or None)
    seed_everything(train_cfg.seed)  # identical initial weights on every rank
    model = MODELS[name].build(model_cfg)
    device = pick_device(options["device"])
    result = train(model, x, train_cfg, options["run_name"], resume=options["resume"], device=device,
                   model_config={"name": name, "preset": options["preset"], **asdict(model_cfg),
                                 "data": cifar.describe(), "split": options["split"], "n_train": len(x)},
                   use_wandb=options["wandb"])
    if world > 1:  # leave together: a rank exiting mid-teardown can abort its peers
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if rank == 0:
        print(f"done: {name} step {result.step}/{train_cfg.steps} in {result.folder} on {describe_device(device)}"
              f" x{world}: {result.img_per_s:.0f} img/s, {result.n_skipped} skipped updates")
    return 0
