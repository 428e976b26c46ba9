"""Guards of a run folder, so that nothing in it is lost or mixed up: run names resolved to folders, one writer at a
time, a fresh start that moves the earlier run aside, stale temp files swept, a resume refused when the model
config changed and warned about when the training config did.

`RunLock` is an exclusive `fcntl.flock` on `<folder>/.lock`, which records the holder's pid and host; the kernel
drops it when its process dies, so a killed run never leaves a stale lock behind (the file stays, unlocked).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist

from ..common.paths import run_dir
from . import checkpoints as ckpt
from .config import TrainConfig

LOCK_NAME = ".lock"
PREVIOUS_PREFIX = "previous-"
# files.atomic_write_bytes' temp names: ".<target>.<random>.tmp", left behind by a kill during a write
# lib.data.CIFAR10.describe(): "CIFAR-10 from <copy> at <root>: <n> train / <n> test images"; the root is dropped
DATA_LOCATION = re.compile(r" at .+(?=: [\d,]+ train / [\d,]+ test images$)")
STALE_TEMP = re.compile(r"^\.(checkpoint_\d+\.pt|config\.json|metrics\.jsonl)\..+\.tmp$")


class RunFolderError(RuntimeError):
    """A run folder that cannot be used as asked; the message names the conflict and the fix."""


class RunLockedError(RunFolderError):
    """Another process is training into the same run folder."""


class ConfigMismatchError(RunFolderError):
    """The run folder holds a run of another model config or data."""


class RunLock:
    """An exclusive lock on `<folder>/.lock` (created with the folder if needed), released by `release()` or
    by the death of the process."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or raise RunLockedError naming the holder and the fixes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "an unknown process"
            os.close(fd)
            raise RunLockedError(
                f"run folder {self.path.parent} is in use by another training process ({holder}); two processes "
                "writing one run would mix their checkpoints. Wait for it to finish or stop it (rerunning then "
                "resumes from its last checkpoint), or train under another run name."
            ) from None
        os.ftruncate(fd, 0)
        os.write(
            fd,
            f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
            "\n".encode(),
        )
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def claim(folder: Path, resume: bool, is_main: bool, world: int, device) -> RunLock | None:
    """Rank 0 locks `folder`, removes stale temp files and, for a fresh start, moves an earlier run aside; every
    rank learns whether that worked, so none waits forever on a rank 0 that stopped. Returns rank 0's lock."""
    lock, error = None, None
    if is_main:
        try:
            lock = RunLock(folder).acquire()
            remove_stale_temps(folder)
            if not resume:
                move_aside(folder)
        except Exception as err:  # re-raised below, after the other ranks have heard of it
            error = err
            if lock is not None:
                lock.release()
    if world > 1:
        ok = torch.tensor(int(error is None), device=device)
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if not ok.item() and error is None:
            raise RunFolderError(f"rank 0 could not claim {folder}: see its error")
    if error is not None:
        raise error
    return lock


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temp files of interrupted atomic writes; call only while holding the folder's lock."""
    folder = Path(folder)
    stale = [p for p in folder.iterdir() if STALE_TEMP.match(p.name)] if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def move_aside(folder: str | Path) -> Path | None:
    """Move an earlier run (everything in `folder` but the lock and older previous-* folders) into
    `<folder>/previous-<time>/` and warn; None when the folder holds no checkpoint (nothing worth keeping)."""
    folder = Path(folder)
    kept = ckpt.list_checkpoints(folder)
    if not kept:
        return None
    target = folder / f"{PREVIOUS_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 1000):
        if not target.exists():
            break
        target = folder / f"{PREVIOUS_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{n}"
    target.mkdir()
    for entry in folder.iterdir():
        if entry.name != LOCK_NAME and not entry.name.startswith(PREVIOUS_PREFIX):
            entry.rename(target / entry.name)
    warnings.warn(
        f"starting {folder} afresh (resume=False): its earlier run (checkpoints up to {kept[-1].name}, "
        f"metrics, samples) was moved to {target}; delete that folder when you no longer need it",
        stacklevel=5,
    )
    return target


def check_model_config(saved: dict, now: dict, checkpoint: Path) -> None:
    """Refuse to resume (or load) a run whose model config or data differ from this call's; keys that only
    one side records cannot be compared and are named in a warning."""
    saved, now = _plain(saved or {}), _plain(now or {})
    changed = {k: (saved[k], now[k]) for k in saved.keys() & now.keys() if saved[k] != now[k]}
    if changed:
        listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(changed.items()))
        folder = checkpoint.parent
        raise ConfigMismatchError(
            f"run folder {folder} holds a run with another model config or data ({listed}; newest checkpoint "
            f"{checkpoint.name}): resuming or loading it under this config would mix the two. Nothing was written. "
            "Train under another run name (one folder per config), pass the stored values to load that run, or "
            f"start afresh with resume=False (CLI: --resume false), which moves the old run into "
            f"{folder / (PREVIOUS_PREFIX + '<time>')}/."
        )
    one_sided = sorted(saved.keys() ^ now.keys())
    if one_sided:
        warnings.warn(
            f"resuming {checkpoint}: model config key(s) {one_sided} are recorded on one side only "
            "(checkpoint or this call), so they could not be compared",
            stacklevel=5,
        )


def warn_if_world_changed(saved_world: int, world: int, batch_size: int, checkpoint: Path) -> None:
    """The global batch is world_size x batch_size: a resume on another number of processes changes it."""
    if saved_world != world:
        warnings.warn(
            f"resuming {checkpoint}, written by {saved_world} process(es), with {world}: the global batch changes "
            f"from {saved_world} x {batch_size} = {saved_world * batch_size} to {world} x {batch_size} = "
            f"{world * batch_size} images per step, so the remaining steps see "
            f"{world / saved_world:g} times the images per update and another data order (the LR schedule is "
            f"unchanged). Resume with {saved_world} process(es) to continue exactly.",
            stacklevel=5,
        )


def _plain(config: dict) -> dict:
    """JSON-normal values (tuples as lists), so a checkpoint's config compares equal to the dataclass's; the data
    description loses its location (the same copy elsewhere, e.g. on another machine, is the same data)."""
    plain = json.loads(json.dumps(config, default=str))
    if isinstance(plain.get("data"), str):
        plain["data"] = DATA_LOCATION.sub("", plain["data"])
    return plain


def resolve(run: str | Path) -> Path:
    """A Path is the run folder itself; a str is a run name, which must be a plain folder name (runs.run_dir)."""
    if isinstance(run, os.PathLike):
        return Path(run)
    if isinstance(run, str):
        return run_dir(run)
    raise TypeError(
        f"run must be a run name (str) or a folder (pathlib.Path), got {type(run).__name__} {run!r}"
    )


def warn_if_train_config_changed(saved: dict, now: dict, path: Path) -> None:
    """Resuming under another TrainConfig is allowed (e.g. more steps), but never silently."""
    defaults = asdict(TrainConfig())  # a field newer than the checkpoint, left at its default, is no change
    changed = {
        k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v and (k in saved or v != defaults[k])
    }
    if changed:
        listed = ", ".join(f"{k}: {old} -> {new}" for k, (old, new) in changed.items())
        warnings.warn(f"resuming {path} with a changed TrainConfig ({listed})", stacklevel=5)


def newest_checkpoint(source: str | Path) -> Path:
    """`source` itself if it is a file, else the newest checkpoint in that run folder."""
    source = Path(source)
    if source.is_dir():
        found = ckpt.list_checkpoints(source)
        if not found:
            raise ckpt.CheckpointError(f"no checkpoint_*.pt in {source} to initialise from")
        return found[-1]
    return source
