"""Sample banks: a few thousand uint8 samples of a run, stored next to its results JSON.

`outputs/results/<experiment>.samples.npz` (smoke: `outputs/smoke/results/`) holds `images` uint8
(N, 3, 32, 32), compressed (np.savez_compressed; a few MB for 2,000 images), plus the seed and the sampling
time, so distances can be recomputed and grids drawn later without the checkpoint, which stays out of git.
It also holds what notebook 06 reads from a results record: the run folder of its checkpoint and its tightest
test bound.
"""
from __future__ import annotations

import io
import math
import time
from pathlib import Path

import numpy as np
import torch

from . import runs

N_BANK = 2000  # images per bank


def bank_path(experiment: str, smoke: bool | None = None) -> Path:
    """`<results folder>/<experiment>.samples.npz`, beside `<experiment>.json`."""
    return runs.results_path(experiment, smoke).with_suffix(".samples.npz")


def to_uint8(x) -> np.ndarray:
    """Images (N, 3, H, W) in [0, 1] (float, any device) or uint8 -> uint8 numpy, rounded to the 256 levels."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x if x.dtype == torch.uint8 else (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
        x = x.numpy()
    x = np.asarray(x)
    if x.dtype != np.uint8:
        x = np.clip(np.round(x.astype(np.float32) * 255), 0, 255).astype(np.uint8)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images (N, 3, H, W), got shape {x.shape}")
    return x


@torch.no_grad()
def draw_samples(model, n: int = N_BANK, batch_size: int = 250, seed: int = 0) -> tuple[np.ndarray, float]:
    """n samples of model.sample as uint8 (n, 3, 32, 32) and the sampling time in seconds per 1,000 images."""
    torch.manual_seed(seed)
    chunks, start = [], time.perf_counter()
    for first in range(0, n, batch_size):
        chunks.append(to_uint8(model.sample(min(batch_size, n - first))))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return np.concatenate(chunks), 1000 * seconds / max(n, 1)


def save_sample_bank(experiment: str, images, seed: int = 0, seconds_per_1k: float | None = None,
                     smoke: bool | None = None) -> Path:
    """Write the bank of `experiment` (images uint8 or in [0, 1]) atomically; returns its path."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=to_uint8(images), seed=np.int64(seed),
                        seconds_per_1k=np.float64(np.nan if seconds_per_1k is None else seconds_per_1k))
    path = bank_path(experiment, smoke)
    runs.atomic_write_bytes(path, buffer.getvalue())
    return path


def load_sample_bank(experiment: str, smoke: bool | None = None) -> dict | None:
    """{"images": uint8 (N, 3, 32, 32), "seed": int, "seconds_per_1k": float} or None when there is no bank."""
    path = bank_path(experiment, smoke)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as f:
        return {"images": f["images"], "seed": int(f["seed"]), "seconds_per_1k": float(f["seconds_per_1k"])}


def run_name(record: dict) -> str:
    """The run folder (under outputs/runs/, smoke: outputs/smoke/runs/) holding the checkpoint a results record
    describes: its "run" field, else (results files written before that field existed) its experiment name."""
    return record.get("run") or record["experiment"]


def model_from_run(run: str, model_name: str, smoke: bool | None = None, device="cpu"):
    """(model with its EMA weights, n_params) from the newest checkpoint in run folder `run` (`run_name(record)`),
    or None when that folder has no checkpoint (checkpoints stay out of git) or the family is not in
    `lib.models.MODELS`."""
    from .checkpoints import list_checkpoints
    from .models import MODELS, load_run_model

    folder = runs.run_dir(run, smoke)
    if model_name not in MODELS or not (folder.is_dir() and list_checkpoints(folder)):
        return None
    model, _ = load_run_model(folder, model_name, device)
    return model, sum(p.numel() for p in model.parameters())


def tightest_test_bound(metrics: dict) -> tuple[float | None, str | None]:
    """(bits/dim, label) of the tightest test bound in a results record's metrics: an importance-weighted L_k
    (label "L_<k>"; NVAE's `test_bpd_iw`, the VAEs' `bpd_k`) before the ELBO (label "ELBO"), the lower value
    among several of a kind; (None, None) without a likelihood (NCSN). Validation and training numbers are skipped."""
    k = metrics.get("k_eval", metrics.get("k"))
    found = []
    for key, value in metrics.items():
        words = set(key.lower().split("_"))
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            continue
        if not words & {"bpd", "bits"} or words & {"val", "train", "fit"}:
            continue
        is_elbo = "elbo" in words
        label = "ELBO" if is_elbo else f"L_{k}" if words & {"k", "iw"} and k else key
        found.append((is_elbo, float(value), label))
    if not found:
        return None, None
    _, value, label = min(found)
    return value, label
