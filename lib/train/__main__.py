"""`python -m lib.train MODEL [--preset NAME] [--key value ...]`: train outside notebooks.

Every `--key value` names a field of the model's config or of TrainConfig and is converted to that field's
type (a tuple field takes a comma-separated list: `--widths 32,64,128` or `--widths "(32, 64)"`); a few options
choose the data and the run. Bad values are refused before the data loads (exit status 2). The same command runs
under `torchrun --nproc_per_node=N -m lib.train ...` (DistributedDataParallel, one data shard per process).
Notebooks later load the run folder this writes (outputs/runs/<run>/). This module is the entry point of the
training package: it alone in lib.train reads the model registry (lib.models), which sits above the loop.

Interrupt: Ctrl-C or SIGTERM finishes the current step, saves a checkpoint there and stops (exit 130 for Ctrl-C,
143 for SIGTERM), naming the checkpoint; a second signal stops at once without saving.
Resume: running the same command again continues from the run folder's newest checkpoint, exactly. A changed
model config or data setting (--beta, --widths, --split, --limit, the data copy) is refused, naming the fields:
use another --run_name, or restart. A changed TrainConfig (e.g. more --steps) is allowed, with a warning, and so
is another number of processes (a warning: the global batch changes).
Budget: `--minutes N` trains for N minutes of wall time with every schedule complete: a probe of the loop turns the
minutes into steps, and the LR warm-up and cosine, KL warm-up and capacity annealing are laid over them
(lib.workbook.budget.train_within, as the notebooks do; the plan is stored in <run>/budget.json).
`--max_minutes N` is a hard wall-clock stop instead: the session ends with a checkpoint after N minutes, its
schedules laid over --steps as they are (so they may end unfinished); a rerun resumes. With --minutes it caps each
session.
Restart: `--resume false` starts afresh; the folder's earlier run is moved into <run>/previous-<time>/, not lost.
One process at a time may train a run folder; a second one is refused, naming the first (pid and host).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import types
import typing
from dataclasses import asdict, fields

import torch
import torch.distributed

from ..common.devices import describe_device, pick_device, seed_everything
from ..common.paths import FALSY, TRUTHY, check_run_name
from ..data import load_cifar10
from ..models import MODELS
from .checkpoints import CheckpointError
from .config import TrainConfig
from .interrupts import Interrupted
from .loop import distributed_context, train
from .run_folder import RunFolderError

OPTIONS = {  # run and data options that are not config fields: name -> (type, default, help)
    "preset": (str, None, "named preset of the model (model config + training config); default: its first"),
    "run_name": (
        str,
        None,
        "run folder under outputs/runs (default: MODEL-PRESET); not --run, which torchrun takes",
    ),
    "data_root": (str, None, "CIFAR-10 folder (default: $CIFAR10_DIR, else data/cifar10)"),
    "split": (str, "fit", "training split: fit (45k, keeps val held out) or train (50k)"),
    "limit": (int, 0, "train on the first LIMIT images only (>= 0); 0 = all"),
    "device": (str, None, "cuda | mps | cpu (default: the best available)"),
    "resume": (
        bool,
        True,
        "continue from the run folder's newest checkpoint; false: start afresh, moving the "
        "earlier run into <run>/previous-<time>/",
    ),
    "wandb": (bool, True, "mirror metrics to wandb when installed and WANDB_MODE is not disabled"),
    "minutes": (
        float,
        0.0,
        "training budget: the steps that fit N minutes, every schedule laid over them and complete (a probe of "
        "the loop); 0 = --steps",
    ),
}
MAX_MINUTES_HELP = (
    "  --max_minutes: hard wall-clock stop: the session ends with a checkpoint after N minutes, its schedules "
    "laid over --steps as they are; a rerun resumes (default 0: none)"
)


class UsageError(ValueError):
    """A bad command line; the message says what was wrong and what is allowed."""


def parse_value(text: str, kind: typing.Any, name: str):
    """Convert `text` to the annotated type `kind` (int, float, bool, str, tuple[T, ...], or Optional of one)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null"):
            return None
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if typing.get_origin(kind) is tuple:
        return _parse_tuple(text, typing.get_args(kind), name)
    if kind is bool:
        if text.lower() in TRUTHY:
            return True
        if text.lower() in FALSY:
            return False
        raise UsageError(f"--{name} expects true or false, got {text!r}")
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise UsageError(f"--{name} expects {kind.__name__}, got {text!r}") from None


def _parse_tuple(text: str, args: tuple, name: str) -> tuple:
    """'32,64,128', '(32, 64)' or '[32]' -> a tuple whose items are converted to tuple[T, ...] or tuple[T1, T2]."""
    inner = text.strip()
    if inner[:1] + inner[-1:] in ("()", "[]"):
        inner = inner[1:-1]
    items = [item.strip() for item in inner.split(",")]
    if items and not items[-1]:
        items.pop()  # "(32,)": a trailing comma
    variadic = len(args) == 2 and args[1] is Ellipsis
    kinds = [args[0]] * len(items) if variadic else list(args)
    example = ",".join(["32", "64", "128"] if variadic else ["1"] * len(args))
    if not items or len(kinds) != len(items) or not all(items):
        count = "one or more" if variadic else str(len(args))
        raise UsageError(f"--{name} expects {count} comma-separated value(s) such as {example}, got {text!r}")
    try:
        return tuple(parse_value(item, k, name) for item, k in zip(items, kinds))
    except UsageError as err:
        raise UsageError(f"{err} in {text!r} (a comma-separated list such as {example})") from None


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
        raise UsageError(
            f"name a model first: python -m lib.train MODEL [--key value ...]; models: {list(MODELS)}"
        )
    name, pairs = argv[0], split_pairs(argv[1:])
    pairs_given = set(pairs)
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of {list(MODELS)}")
    spec = MODELS[name]
    options = {k: parse_value(pairs.pop(k), t, k) if k in pairs else d for k, (t, d, _) in OPTIONS.items()}
    options["preset"] = options["preset"] or next(iter(spec.presets))  # "default" where a family has one
    if options["preset"] not in spec.presets:
        raise UsageError(
            f"unknown preset {options['preset']!r} for {name}; choose one of {list(spec.presets)}"
        )
    model_cfg, train_cfg = spec.presets[options["preset"]]
    model_cfg = _override(model_cfg, pairs, pairs.keys() & _names(spec.config))
    train_cfg = _override(train_cfg, pairs, pairs.keys() & _names(TrainConfig))
    unknown = pairs.keys() - _names(spec.config) - _names(TrainConfig)
    if unknown:
        raise UsageError(
            f"unknown option(s) {sorted('--' + k for k in unknown)} for model {name}; known: "
            f"{sorted(OPTIONS)} + model config {sorted(_names(spec.config))} "
            f"+ TrainConfig {sorted(_names(TrainConfig))}"
        )
    options["run_name"] = options["run_name"] or f"{name}-{options['preset']}"
    check_options(options)
    if options["minutes"] and "steps" in pairs_given:
        raise UsageError(
            "--steps and --minutes both set the run's length: give --steps N for a fixed number of steps, or "
            "--minutes N for the steps that fit a budget, not both"
        )
    return name, options, model_cfg, train_cfg


TRAIN_SPLITS = ("fit", "train")  # val and test stay held out for evaluation


def check_options(options: dict) -> None:
    """The data and run options, checked before any data loads; raises UsageError."""
    if options["split"] not in TRAIN_SPLITS:
        raise UsageError(
            f"--split must be one of {list(TRAIN_SPLITS)} (val and test are held out), "
            f"got {options['split']!r}"
        )
    minutes = options["minutes"]
    if not (math.isfinite(minutes) and minutes >= 0):
        raise UsageError(
            f"--minutes must be a finite number of minutes >= 0 (0: train --steps), got {minutes}"
        )
    if minutes and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("--minutes plans one process; under torchrun give --steps instead")
    if options["limit"] < 0:
        raise UsageError(f"--limit must be >= 0 (0 = all images), got {options['limit']}")
    try:
        check_run_name(options["run_name"])
    except ValueError as err:
        raise UsageError(f"--run_name: {err}") from None
    if options["device"] is not None:
        check_device(options["device"])


def check_device(text: str) -> None:
    """Refuse a device string torch cannot parse, or one this machine does not have."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device expects cpu, cuda, cuda:N or mps, got {text!r}") from None
    mps = getattr(torch.backends, "mps", None)
    present = {
        "cpu": 1,
        "cuda": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "mps": int(mps is not None and mps.is_available()),
    }
    if device.type not in present:
        raise UsageError(f"--device expects cpu, cuda, cuda:N or mps, got {text!r}")
    if present[device.type] == 0 or (device.index or 0) >= present[device.type]:
        have = [kind for kind, n in present.items() if n]
        raise UsageError(
            f"--device {text}: this machine has no such device (available: {have}); "
            "leave --device out to use the best available"
        )


def _names(config_class) -> set[str]:
    return {f.name for f in fields(config_class)}


def _override(cfg, pairs: dict, keys):
    """dataclasses.replace with values converted to each field's annotated type (validation runs again)."""
    hints = typing.get_type_hints(type(cfg))
    return dataclasses.replace(cfg, **{k: parse_value(pairs[k], hints[k], k) for k in keys})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(
            __doc__
            + "\nOptions:\n"
            + "\n".join(f"  --{k}: {h} (default {d})" for k, (_, d, h) in OPTIONS.items())
            + "\n"
            + MAX_MINUTES_HELP
        )
        return 0
    try:
        name, options, model_cfg, train_cfg = parse(argv)
    except ValueError as err:  # UsageError, or a config's own validation naming the field
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return _train(name, options, model_cfg, train_cfg)
    except (RunFolderError, CheckpointError) as err:  # a busy folder, another model config, unusable weights
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Interrupted:  # the message (step, checkpoint, how to resume) is printed already
        return 130


def _train(name: str, options: dict, model_cfg, train_cfg: TrainConfig) -> int:
    """Load the data, build the model and train it (a SIGTERM exits 143 from inside train)."""
    rank, _, world = distributed_context()
    cifar = load_cifar10(options["data_root"])
    x, _ = cifar.split(options["split"], limit=options["limit"] or None)
    device = pick_device(options["device"])
    if options["minutes"]:
        result, steps = _train_within(name, options, model_cfg, train_cfg, x, cifar, device)
    else:
        result, steps = _train_steps(name, options, model_cfg, train_cfg, x, cifar, device), train_cfg.steps
    if world > 1:  # leave together: a rank exiting mid-teardown can abort its peers
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if rank == 0:
        print(
            f"done: {name} step {result.step}/{steps} in {result.folder} on {describe_device(device)}"
            f" x{world}: {result.img_per_s:.0f} img/s, {result.n_skipped} skipped updates"
        )
    return 0


def _train_steps(name: str, options: dict, model_cfg, train_cfg: TrainConfig, x, cifar, device):
    """cfg.steps steps (and --max_minutes, if any, as a hard stop)."""
    seed_everything(train_cfg.seed)  # identical initial weights on every rank
    model = MODELS[name].build(model_cfg)
    return train(
        model,
        x,
        train_cfg,
        options["run_name"],
        resume=options["resume"],
        device=device,
        model_config={
            "name": name,
            "preset": options["preset"],
            **asdict(model_cfg),
            "data": cifar.describe(),
            "split": options["split"],
            "n_train": len(x),
        },
        use_wandb=options["wandb"],
    )


def _train_within(name: str, options: dict, model_cfg, train_cfg: TrainConfig, x, cifar, device):
    """--minutes: lib.workbook.budget.train_within (a probe, then the steps that fit); returns (result, planned
    steps). The run stores the model config _train_steps would (run_record of the same keys)."""
    from ..workbook import budget  # the workbook sits above the loop: imported by this entry point only

    result, plan = budget.train_within(
        options["minutes"],
        name,
        model_cfg,
        train_cfg,
        x,
        options["run_name"],
        device,
        data=cifar.describe(),
        seed=train_cfg.seed,
        resume=options["resume"],
        use_wandb=options["wandb"],
        preset=options["preset"],
        split=options["split"],
    )
    return result, plan.steps


if __name__ == "__main__":
    raise SystemExit(main())
