"""Checkpoints: atomic writes, the RNG states that make resume exact, and clear errors for bad files.

A checkpoint is a plain dict of state_dicts, numbers and tensors (never pickled objects), so it loads with
`torch.load(weights_only=True)`. Files are `checkpoint_<step>.pt` in the run folder, written through a temp
file and a rename; the newest `keep` are kept, so a file damaged after writing still leaves its predecessor, which
a resume then uses (`load_newest_readable` moves the damaged file aside).
`isolated_rng` runs side work (sample grids) on its own seeded stream and puts every global RNG back, so that
work never shifts the training draws a checkpoint records.
"""

from __future__ import annotations

import contextlib
import io
import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from ..common.files import atomic_write_bytes

PATTERN = re.compile(r"^checkpoint_(\d+)\.pt$")
REQUIRED_KEYS = ("step", "model", "ema", "optimizer", "train_config")
DAMAGED_SUFFIX = ".damaged"  # a checkpoint that failed to load, kept for inspection


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and what to do, `why` the bare reason."""

    def __init__(self, message: str, why: str = ""):
        super().__init__(message)
        self.why = why or message


def checkpoint_path(folder: str | Path, step: int) -> Path:
    return Path(folder) / f"checkpoint_{step:07d}.pt"


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoints in `folder`, oldest first (by step)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(folder: str | Path, state: dict, keep: int = 2) -> Path:
    """Write `state` atomically as checkpoint_<step>.pt, then prune all but the newest `keep`."""
    path = checkpoint_path(folder, int(state["step"]))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    for old in list_checkpoints(folder)[: -max(keep, 1)]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint; an unreadable or incomplete file raises CheckpointError naming it."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for damaged files
        why = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
        raise CheckpointError(_damaged_message(path, why), why) from err
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(_damaged_message(path, f"missing keys {missing}"), f"missing keys {missing}")
    return state


def load_newest_readable(paths: list[Path], move_aside: bool = True) -> tuple[Path, dict]:
    """(path, state) of the newest of `paths` (oldest first) that loads. A newer one that does not (truncated by a
    full disk, corrupted) is moved aside to <name>.damaged, never deleted, with a warning; under DDP only rank 0
    moves (move_aside), and a file another rank moved meanwhile counts as damaged. CheckpointError when none
    loads (then nothing is moved)."""
    damaged = []
    for path in reversed(paths):
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            damaged.append((path, err.why))
            continue
        for bad, why in damaged:
            where = _move_aside(bad) if move_aside and bad.exists() else None
            kept = f"moved aside to {where.name}" if where else "left for rank 0 to move aside"
            warnings.warn(
                f"checkpoint {bad} is unreadable (truncated or corrupt?): {why}; resuming from the newest "
                f"readable one, {path.name}, instead ({bad.name} {kept}, not deleted)",
                stacklevel=3,
            )
        return path, state
    listed = "; ".join(f"{p.name}: {why}" for p, why in damaged)
    raise CheckpointError(
        f"no checkpoint in {paths[-1].parent} loads: {listed}. Start afresh with resume=False (it moves this run "
        "aside), or restore a good copy of one of them."
    )


def _move_aside(path: Path) -> Path:
    """Rename a damaged checkpoint to <name>.damaged (or .damaged-2, ...), out of list_checkpoints' sight."""
    target, n = path.with_name(path.name + DAMAGED_SUFFIX), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{DAMAGED_SUFFIX}-{n}")
    path.rename(target)
    return target


def load_weights(module: torch.nn.Module, weights: dict, path: str | Path) -> None:
    """module.load_state_dict(weights) from checkpoint `path`, with an error naming the file and the fixes when
    names or shapes differ."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as err:
        why = " ".join(str(err).split())[:300]  # one line: torch lists every mismatched tensor
        raise CheckpointError(
            f"the weights in {path} do not fit this model (another architecture or width?): {why}. "
            "Pass the model's config as model_config so a difference is named, train under another run name, or "
            "start afresh with resume=False (it moves the old run aside)."
        ) from None


def _damaged_message(path: Path, why: str) -> str:
    """Name the damaged file and the intact one to fall back to, if there is one."""
    older = [p for p in list_checkpoints(path.parent) if p.name < path.name]
    advice = (
        f"The previous checkpoint {older[-1]} is still there: delete or move {path.name} to resume from it."
        if older
        else "No earlier checkpoint exists in that folder: delete it to start the run afresh."
    )
    return f"checkpoint {path} is unreadable (truncated or corrupt?): {why}. {advice}"


def capture_rng() -> dict:
    """The RNG states of Python, NumPy and torch (CPU and every CUDA device) as tensors and numbers."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": _python_state_to_tensor(random.getstate()),
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Inverse of capture_rng. Each tensor is read through .cpu() first: RNG states are host data, and a state
    loaded with map_location=<accelerator> holds accelerator tensors, which .numpy() refuses (TypeError)."""
    random.setstate(_python_state_from_tensor(state["python"]))
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].cpu().numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


@contextlib.contextmanager
def isolated_rng(seed: int, device: torch.device | str):
    """Run the block on a stream seeded by `seed`; afterwards Python, NumPy and torch (CPU and every device of
    `device`'s accelerator) continue as if it never ran. Resume stays exact whether or not the block ran."""
    device = torch.device(device)
    accelerator = None if device.type == "cpu" else device.type
    # torch.manual_seed reseeds every device of the accelerator, so every one of them is forked, not just ours
    indices = list(range(torch.get_device_module(accelerator).device_count())) if accelerator else []
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=indices, device_type=accelerator):
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _python_state_to_tensor(state: tuple) -> dict:
    """Python's Mersenne state (version, 625 ints, cached gauss) as an int64 tensor and a float or None."""
    version, internal, gauss = state
    return {"state": torch.tensor([version, *internal], dtype=torch.int64), "gauss": gauss}


def _python_state_from_tensor(saved: dict) -> tuple:
    values = saved["state"].cpu().tolist()
    return values[0], tuple(values[1:]), saved["gauss"]
