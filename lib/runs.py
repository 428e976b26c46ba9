"""Run folders and records: paths, smoke mode, devices, seeding, atomic writes, the metrics logger, results.

A run lives in `outputs/runs/<name>/` (`outputs/smoke/runs/<name>/` in smoke mode): `config.json`,
`metrics.jsonl` (one JSON object per logged step), `samples/` and checkpoints. The logger mirrors to wandb
when wandb is installed (a default dependency) and `WANDB_MODE` is not `disabled` (`offline` is passed on to
wandb; unset and not logged in, it records offline for a later `wandb sync`); without wandb, or when wandb cannot
start, it warns and keeps local records only.
What a finished run reports (the results record and its sample bank) is lib.results' concern.
"""
from __future__ import annotations

import json
import os
import platform
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

TRUTHY = ("1", "true", "yes", "on")


def repo_root() -> Path:
    """The folder holding `lib/` (the repository root)."""
    return Path(__file__).resolve().parents[1]


def outputs_dir() -> Path:
    """`$WORKBOOK_OUTPUTS`, else `<repo>/outputs`."""
    return Path(os.environ.get("WORKBOOK_OUTPUTS") or repo_root() / "outputs")


def is_smoke() -> bool:
    """Whether `$WORKBOOK_SMOKE` asks for the small CPU profile."""
    return os.environ.get("WORKBOOK_SMOKE", "0").strip().lower() in TRUTHY


PROFILES = ("smoke", "short", "full")  # CPU/CI checks | one H100-class GPU, <= 8 min a notebook | hours


def profile() -> str:
    """The notebooks' profile: `$WORKBOOK_PROFILE` (smoke, short or full); without it, smoke when
    `$WORKBOOK_SMOKE` asks for it, else full. An unknown value is an error naming the choices."""
    chosen = os.environ.get("WORKBOOK_PROFILE", "").strip().lower()
    if chosen in ("", "auto"):
        return "smoke" if is_smoke() else "full"
    if chosen not in PROFILES:
        raise ValueError(f"WORKBOOK_PROFILE={chosen!r}: choose one of {list(PROFILES)}")
    return chosen


def run_dir(name: str, smoke: bool | None = None) -> Path:
    """The folder of run `name`: `outputs/runs/<name>`, or `outputs/smoke/runs/<name>` in smoke mode. A name is
    a plain folder name, so no run can write outside the runs folder; pass a pathlib.Path to train() for another
    folder."""
    check_run_name(name)
    smoke = is_smoke() if smoke is None else smoke
    return outputs_dir() / ("smoke/runs" if smoke else "runs") / name


def check_run_name(name: str) -> None:
    """Raise ValueError unless `name` is a plain folder name: a non-empty str without a path separator or '..',
    not starting with '.'."""
    separators = {"/", "\\", os.sep, os.altsep} - {None}
    if (not isinstance(name, str) or not name.strip() or name.startswith(".") or ".." in name
            or any(sep in name for sep in separators)):
        raise ValueError(f"run name {name!r} must be a plain folder name (not empty, no '/' or '\\', no '..', not "
                         "starting with '.'), so the run stays inside the runs folder; to train into another folder, "
                         "pass train() a pathlib.Path")


def pick_device(prefer: str | None = None) -> torch.device:
    """`prefer` if given, else CUDA, then Apple MPS, then the CPU."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device | str) -> str:
    """A human name for `device`, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu (2 threads)'."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and a rename: never a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache beside shared data must be readable by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """`obj` as indented JSON, written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def _jsonable(value: Any) -> Any:
    """Fallback JSON conversion for tensors, numpy scalars, paths and devices."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON-lines file; a torn last line (a crash mid-write) is skipped."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class RunLogger:
    """Appends metric records to `metrics.jsonl` and mirrors them to wandb when that is enabled."""

    def __init__(self, folder: str | os.PathLike, config: dict, use_wandb: bool = True,
                 resume_at: int | None = None):
        """resume_at: the step a resumed run continues from; later records (written after that checkpoint,
        before an interruption) are dropped so the curve continues without duplicates. None starts afresh."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.folder / "config.json", config)
        self.path = self.folder / "metrics.jsonl"
        if resume_at is None:
            self.path.unlink(missing_ok=True)
        elif self.path.exists():
            kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_at]
            atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        self._wandb = _start_wandb(self.folder, config, resume_at is not None) if use_wandb else None

    def log(self, record: dict) -> None:
        """Append one record (plain floats) and mirror it."""
        record = {k: _jsonable(v) if not isinstance(v, (int, float, str, bool)) else v for k, v in record.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._wandb is not None:
            self._wandb.log(record, step=int(record.get("step", 0)))

    def close(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def wandb_logged_in() -> bool:
    """Whether wandb has an API key to go online with: $WANDB_API_KEY, or an api.wandb.ai entry in ~/.netrc."""
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())


def _start_wandb(folder: Path, config: dict, resume: bool):
    """A wandb run, or None when wandb is absent, `WANDB_MODE=disabled`, or wandb fails to start; never raises."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower() or None  # None: wandb's own default (online)
    if mode == "disabled":
        return None
    try:
        import wandb
    except ImportError:
        return None
    if mode is None and not wandb_logged_in():
        mode = "offline"  # never an API-key prompt mid-notebook: record offline, `wandb sync` later
    try:
        return wandb.init(project=os.environ.get("WANDB_PROJECT", "cifar10-generative-workbook"), name=folder.name,
                          id=folder.name, dir=str(folder), config=config, resume="allow" if resume else None,
                          mode=mode)
    except Exception as err:  # wandb raises its own types (not logged in, no network, timeout): none may stop a run
        warnings.warn(f"wandb.init failed ({type(err).__name__}: {err}); this run's records stay local in "
                      f"{folder / 'metrics.jsonl'}. Run `wandb login`, set WANDB_MODE=offline to sync later, or "
                      f"WANDB_MODE=disabled to skip wandb.", stacklevel=2)
        return None
