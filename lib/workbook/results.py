"""The run -> results contract, one owner for every notebook: the results record, the sample bank, loading both
back.

A finished real run writes `outputs/results/<experiment>.json` (smoke runs: `outputs/smoke/results/`, so they can
never overwrite a real result) and beside it `<experiment>.samples.npz`, its sample bank: `images` uint8
(N, 3, 32, 32) compressed (a few MB for 2,000 images), the seed and the sampling time, so distances can be
recomputed and grids drawn later without the checkpoint, which stays out of git. The record names the run folder
of its checkpoint (`run`), the model family (`model`), its size (`n_params`), the data copy and the compute.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..common import devices, files, paths
from ..common.progress import Progress
from ..data import to_uint8
from ..models import MODELS
from ..train.checkpoints import list_checkpoints
from .budget import record_outcome
from .training import load_run_model

N_BANK = 2000  # images per bank
FAMILIES = {"ncsn": "NCSN", "beta_vae": "β-VAE", "iwae": "IWAE", "nvae": "NVAE"}  # model name -> display name


# --- records --------------------------------------------------------------------------------------------------


def results_path(experiment: str, smoke: bool | None = None) -> Path:
    """`outputs/results/<experiment>.json`, or under `outputs/smoke/results/` in smoke mode."""
    if not experiment or os.sep in experiment or "/" in experiment or experiment.startswith("."):
        raise ValueError(
            f"experiment name {experiment!r} must be a plain file name (no '/', not starting with '.')"
        )
    smoke = paths.is_smoke() if smoke is None else smoke
    return paths.output_dir("results", smoke) / f"{experiment}.json"


def write_results(
    experiment: str,
    *,
    model: str,
    config: dict,
    data: dict,
    device: str,
    wall_minutes: float,
    steps: int,
    img_per_s: float,
    metrics: dict,
    smoke: bool | None = None,
    **extra: Any,
) -> Path:
    """Write the results record of one run atomically and return its path.
    `data` says which copy was used, e.g. {"source": "folder", "format": "jpeg", "lossy": True}."""
    path = results_path(experiment, smoke)
    record = dict(
        experiment=experiment,
        model=model,
        config=config,
        data=data,
        device=device,
        wall_minutes=round(wall_minutes, 3),
        steps=steps,
        img_per_s=round(img_per_s, 1),
        metrics=metrics,
        smoke=paths.is_smoke() if smoke is None else smoke,
        torch=torch.__version__,
        written=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    )
    files.atomic_write_json(path, record)
    return path


def data_record(cifar) -> dict:
    """What a results record says about the data copy: {"source", "format", "lossy"}."""
    return {"source": cifar.source, "format": cifar.image_format, "lossy": cifar.lossy}


def record_experiment(
    experiment: str,
    *,
    model_name: str,
    result,
    cifar,
    device,
    metrics: dict,
    model_cfg=None,
    train_cfg=None,
    preset: str | None = None,
    config: dict | None = None,
    n_bank: int = N_BANK,
    seed: int = 1,
    smoke: bool | None = None,
    sampler=None,
    bank: tuple[np.ndarray, float] | None = None,
    **extra: Any,
) -> Path:
    """What every model notebook does last: draw the sample bank from the EMA weights of `result` (a
    lib.train.TrainResult; or from `sampler`, e.g. an NVAE with re-estimated BatchNorm; or take the `bank`
    (images, seconds per 1k) the notebook drew already), store it, and write the results record with the run's
    compute and `metrics` (the bank's sampling time is added). The record's config is `config`, else the model and
    training configs and the preset. n_bank = 0 without a bank: no bank. Returns the results path."""
    model = result.ema.eval()
    if bank is None and not n_bank:  # no bank (e.g. a second training seed of a setting)
        bank = np.zeros((0, 3, 32, 32), np.uint8), None
    images, seconds_per_1k = bank if bank is not None else draw_samples(sampler or model, n=n_bank, seed=seed)
    bank_file = save_sample_bank(experiment, images, seed, seconds_per_1k, smoke) if len(images) else None
    if config is None:  # without train_cfg: the TrainConfig the run folder's config.json says it trained with
        trained = (
            asdict(train_cfg)
            if train_cfg is not None
            else json.loads((Path(result.folder) / "config.json").read_text())["train"]
        )
        config = {"model": asdict(model_cfg), "train": trained, "preset": preset}
    plan = record_outcome(result.folder, result, log=print)  # a budgeted run: planned vs actual (budget.json)
    if plan is not None:
        extra = {"budget": asdict(plan), **extra}
    return write_results(
        experiment,
        model=model_name,
        config=config,
        data=data_record(cifar),
        device=devices.describe_device(device),
        wall_minutes=result.wall_seconds / 60,
        steps=result.step,
        img_per_s=result.img_per_s,
        metrics={**metrics, "sample_seconds_per_1k": seconds_per_1k},
        smoke=smoke,
        sample_bank=bank_file and bank_file.name,  # beside the results file (a path would name this machine)
        run=Path(result.folder).name,
        n_params=sum(p.numel() for p in model.parameters()),
        **extra,
    )


def record_fitted(
    fitted, model_name: str, S, cifar, device, metrics: dict, seed: int, n_bank: int | None = None, **extra
) -> Path:
    """record_experiment for a run fitted by lib.workbook.budget.fit in a notebook with sizes S
    (lib.workbook.profiles): the experiment is the run folder's name; the configs it trained under, the bank
    size (n_bank, else S's; 0: no bank), the profile and the training plan come from `fitted` and S; extra: e.g.
    preset, bank."""
    if n_bank is None:
        n_bank = getattr(S, "n_bank", None) or getattr(S, "n_bank_samples", N_BANK)
    return record_experiment(
        Path(fitted.result.folder).name,
        model_name=model_name,
        result=fitted.result,
        model_cfg=fitted.model_cfg,
        train_cfg=fitted.train_cfg,
        cifar=cifar,
        device=device,
        metrics=metrics,
        n_bank=n_bank,
        seed=seed,
        smoke=S.smoke,
        profile=S.profile,
        **extra,
    )


def load_records(
    folder: str | Path | None = None, smoke: bool | None = None, all_seeds: bool = False
) -> tuple[list[dict], list[str]]:
    """(results records sorted by file name, notes on skipped files) from `folder` (default: the results folder
    of the profile). Files that are not readable JSON or lack "experiment" and "metrics" are skipped with a note.
    The records of extra training seeds (training_seed > 0: their notebook states the seeds' spread; they carry
    no sample bank) are left out, with one note, unless all_seeds."""
    folder = Path(folder) if folder is not None else results_path("any", smoke).parent
    records, notes, seeds = [], [], 0
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            notes.append(f"skipped {path.name}: not readable JSON ({err})")
            continue
        if not (isinstance(record, dict) and "experiment" in record and "metrics" in record):
            notes.append(f"skipped {path.name}: not a results record (no 'experiment' and 'metrics' fields)")
        elif record.get("training_seed") and not all_seeds:
            seeds += 1
        else:
            records.append(record)
    if seeds:
        notes.append(
            f"left out {seeds} record(s) of extra training seeds (their notebooks state the seeds' spread)"
        )
    return records, notes


def report_key_figure(name: str, value: float, unit: str = "") -> None:
    """Print a notebook's headline number; the notebook runner collects it via `$WORKBOOK_KEY_FIGURE_FILE`."""
    print(f"key figure: {name} = {value:.6g} {unit}".rstrip())
    target = os.environ.get("WORKBOOK_KEY_FIGURE_FILE")
    if target:
        files.atomic_write_json(target, {"name": name, "value": float(value), "unit": unit})


# --- sample banks ---------------------------------------------------------------------------------------------


def bank_path(experiment: str, smoke: bool | None = None) -> Path:
    """`<results folder>/<experiment>.samples.npz`, beside `<experiment>.json`."""
    return results_path(experiment, smoke).with_suffix(".samples.npz")


@torch.no_grad()
def draw_samples(model, n: int = N_BANK, batch_size: int = 250, seed: int = 0) -> tuple[np.ndarray, float]:
    """n samples of model.sample as uint8 (n, 3, 32, 32) and the sampling time in seconds per 1,000 images."""
    torch.manual_seed(seed)
    chunks, start = [], time.perf_counter()
    with Progress(n, f"sampling {type(model).__name__}", "img") as bar:
        for first in range(0, n, batch_size):
            chunks.append(to_uint8(model.sample(min(batch_size, n - first))))
            bar.update(len(chunks[-1]))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    empty = np.zeros((0, 3, 32, 32), np.uint8)
    return (np.concatenate(chunks) if chunks else empty), 1000 * seconds / max(n, 1)


def save_sample_bank(
    experiment: str, images, seed: int = 0, seconds_per_1k: float | None = None, smoke: bool | None = None
) -> Path:
    """Write the bank of `experiment` (images uint8 or in [0, 1]) atomically; returns its path."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        images=to_uint8(images),
        seed=np.int64(seed),
        seconds_per_1k=np.float64(np.nan if seconds_per_1k is None else seconds_per_1k),
    )
    path = bank_path(experiment, smoke)
    files.atomic_write_bytes(path, buffer.getvalue())
    return path


def load_sample_bank(experiment: str, smoke: bool | None = None) -> dict | None:
    """{"images": uint8 (N, 3, 32, 32), "seed": int, "seconds_per_1k": float} or None when there is no bank."""
    path = bank_path(experiment, smoke)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as f:
        return {"images": f["images"], "seed": int(f["seed"]), "seconds_per_1k": float(f["seconds_per_1k"])}


# --- reading a record back: its model, its bound, its samples -------------------------------------------------


def model_from_run(record: dict, smoke: bool | None = None, device="cpu"):
    """(model with its EMA weights, n_params) from the newest checkpoint of the run a results record names, or
    None when that folder has no checkpoint (checkpoints stay out of git) or the family is unknown."""
    folder = paths.run_dir(record["run"], smoke)
    if record.get("model") not in MODELS or not (folder.is_dir() and list_checkpoints(folder)):
        return None
    model, _ = load_run_model(folder, record["model"], device)
    return model, sum(p.numel() for p in model.parameters())


def tightest_test_bound(metrics: dict) -> tuple[float | None, str | None]:
    """(bits/dim, label) of the tightest test bound in a results record's metrics: an importance-weighted L_k
    (label "L_<k>"; NVAE's `test_bpd_iw`, the VAEs' `bpd_k`) before the ELBO (label "ELBO"), the lower value
    among several of a kind; (None, None) without a likelihood (NCSN). Validation and training numbers, standard
    errors (`*_se`) and gaps between two bounds (`bpd_gap`) are skipped."""
    k = metrics.get("k_eval", metrics.get("k"))
    found = []
    for key, value in metrics.items():
        words = set(key.lower().split("_"))
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            continue
        if not words & {"bpd", "bits"} or words & {"val", "train", "fit", "se", "gap"}:
            continue  # a bound's standard error (bpd_k_se) or the ELBO - L_k gap is no bound: it would be the lowest
        is_elbo = "elbo" in words
        label = "ELBO" if is_elbo else f"L_{k}" if words & {"k", "iw"} and k else key
        found.append((is_elbo, float(value), label))
    if not found:
        return None, None
    _, value, label = min(found)
    return value, label
