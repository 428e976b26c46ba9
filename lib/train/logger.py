"""The run's metrics logger: `metrics.jsonl` (one JSON object per logged step), mirrored to wandb.

The logger mirrors to wandb when wandb is installed (a default dependency) and `WANDB_MODE` is not `disabled`
(`offline` is passed on to wandb; unset and not logged in, it records offline for a later `wandb sync`); without
wandb, or when wandb cannot start, it warns and keeps local records only.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from ..common.files import atomic_write_bytes, atomic_write_json, jsonable, read_jsonl


class RunLogger:
    """Appends metric records to `metrics.jsonl` and mirrors them to wandb when that is enabled."""

    def __init__(
        self, folder: str | os.PathLike, config: dict, use_wandb: bool = True, resume_at: int | None = None
    ):
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
        record = {
            k: jsonable(v) if not isinstance(v, (int, float, str, bool)) else v for k, v in record.items()
        }
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
        return wandb.init(
            project=os.environ.get("WANDB_PROJECT", "cifar10-generative-workbook"),
            name=folder.name,
            id=folder.name,
            dir=str(folder),
            config=config,
            resume="allow" if resume else None,
            mode=mode,
        )
    except (
        Exception
    ) as err:  # wandb raises its own types (not logged in, no network, timeout): none may stop a run
        warnings.warn(
            f"wandb.init failed ({type(err).__name__}: {err}); this run's records stay local in "
            f"{folder / 'metrics.jsonl'}. Run `wandb login`, set WANDB_MODE=offline to sync later, or "
            f"WANDB_MODE=disabled to skip wandb.",
            stacklevel=2,
        )
        return None
