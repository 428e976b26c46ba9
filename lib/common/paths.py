"""Where everything is written: the repository, outputs, smoke mode and the profile.

A run lives in `outputs/runs/<name>/` (`outputs/smoke/runs/<name>/` in smoke mode): `config.json`,
`metrics.jsonl` (one JSON object per logged step), `samples/` and checkpoints. Every output and cache path comes
from `output_dir` here, so smoke outputs never mix with real ones.
"""

from __future__ import annotations

import os
from pathlib import Path

TRUTHY = ("1", "true", "yes", "on")
FALSY = ("0", "false", "no", "off")
# CPU/CI checks | one H100-class GPU, <= 8 min a notebook | hours | real runs on a 2-4 core CPU, <= ~45 min a notebook
PROFILES = ("smoke", "short", "full", "cpu")
KINDS = ("runs", "results", "cache", "classifier", "figures", "notebooks")  # the folders under outputs/


def repo_root() -> Path:
    """The folder holding `lib/` (the repository root)."""
    return Path(__file__).resolve().parents[2]


def outputs_dir() -> Path:
    """`$WORKBOOK_OUTPUTS`, else `<repo>/outputs`."""
    return Path(os.environ.get("WORKBOOK_OUTPUTS") or repo_root() / "outputs")


_ADOPTED: list[str] = []  # the profile a notebook resolved in this process (lib.workbook.profiles), if any


def adopt_profile(chosen: str | None) -> None:
    """Make this process run `chosen` (a notebook's resolved profile): `is_smoke()`, and so every `smoke=None`
    default (figure banners, tables, output and cache folders), follows it from now on; None goes back to the
    environment. Resolving (`profile`) never reads it, so running a notebook's settings again starts afresh."""
    if chosen is not None and chosen not in PROFILES:
        raise ValueError(f"profile {chosen!r}: choose one of {list(PROFILES)}")
    _ADOPTED[:] = [chosen] if chosen else []


def is_smoke() -> bool:
    """Whether this process runs the small CPU profile: the profile a notebook adopted (`adopt_profile`), else
    the environment: `$WORKBOOK_SMOKE` true, or `$WORKBOOK_PROFILE=smoke`."""
    if _ADOPTED:
        return _ADOPTED[0] == "smoke"
    smoke_env = os.environ.get("WORKBOOK_SMOKE", "0").strip().lower() in TRUTHY
    return smoke_env or os.environ.get("WORKBOOK_PROFILE", "").strip().lower() == "smoke"


def output_dir(kind: str, smoke: bool | None = None) -> Path:
    """`outputs/<kind>`, or `outputs/smoke/<kind>` in smoke mode (smoke=None reads the environment, `is_smoke`):
    the one place that decides where runs, results, caches, the classifier, figures and executed notebooks go."""
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}: choose one of {list(KINDS)}")
    smoke = is_smoke() if smoke is None else smoke
    return outputs_dir() / "smoke" / kind if smoke else outputs_dir() / kind


def profile(requested: str = "auto", smoke: bool | None = None) -> str:
    """The one profile resolver (notebooks and the runner); `resolve_profile` says where the choice came from."""
    return resolve_profile(requested, smoke)[0]


def resolve_profile(requested: str = "auto", smoke: bool | None = None) -> tuple[str, str]:
    """(profile, where it came from): `requested` unless it is 'auto'; then `smoke` (a notebook's SMOKE
    parameter: True asks for smoke, False for a real profile); then `$WORKBOOK_PROFILE`; then `$WORKBOOK_SMOKE`
    (true: smoke, false: full); then full with CUDA and smoke without. SMOKE = False with nothing else set means
    full. An unknown profile, or a SMOKE that contradicts the profile asked for, is an error naming both."""
    chosen, source = (requested or "auto").strip().lower(), "asked for"
    if chosen == "auto" and smoke:
        chosen, source = "smoke", "SMOKE = True"
    if chosen == "auto":
        chosen = os.environ.get("WORKBOOK_PROFILE", "").strip().lower() or "auto"
        source = f"$WORKBOOK_PROFILE={chosen}"
    if chosen == "auto":
        smoke_env = os.environ.get("WORKBOOK_SMOKE", "").strip().lower()
        chosen = "smoke" if smoke_env in TRUTHY else "full" if smoke_env in FALSY else "auto"
        source = f"$WORKBOOK_SMOKE={smoke_env}"
    if chosen == "auto" and smoke is False:
        chosen, source = "full", "SMOKE = False"
    if chosen == "auto":
        import torch

        cuda = torch.cuda.is_available()
        chosen, source = ("full", "a CUDA GPU is available") if cuda else ("smoke", "no CUDA GPU")
    if chosen not in PROFILES:
        raise ValueError(
            f"profile {chosen!r} (from the argument or $WORKBOOK_PROFILE): choose one of "
            f"{['auto', *PROFILES]}"
        )
    if smoke is not None and smoke != (chosen == "smoke"):
        raise ValueError(
            f"SMOKE = {smoke} contradicts the {chosen} profile ({source}): set SMOKE = None and choose the "
            "profile with PROFILE (or $WORKBOOK_PROFILE)"
        )
    return chosen, source


def run_dir(name: str, smoke: bool | None = None) -> Path:
    """The folder of run `name`: `outputs/runs/<name>`, or `outputs/smoke/runs/<name>` in smoke mode. A name is
    a plain folder name, so no run can write outside the runs folder; pass a pathlib.Path to train() for another
    folder."""
    check_run_name(name)
    return output_dir("runs", smoke) / name


def check_run_name(name: str) -> None:
    """Raise ValueError unless `name` is a plain folder name: a non-empty str without a path separator or '..',
    not starting with '.'."""
    separators = {"/", "\\", os.sep, os.altsep} - {None}
    if (
        not isinstance(name, str)
        or not name.strip()
        or name.startswith(".")
        or ".." in name
        or any(sep in name for sep in separators)
    ):
        raise ValueError(
            f"run name {name!r} must be a plain folder name (not empty, no '/' or '\\', no '..', not "
            "starting with '.'), so the run stays inside the runs folder; to train into another folder, "
            "pass train() a pathlib.Path"
        )
