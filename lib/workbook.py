"""Run the workbook: every numbered notebook, in order, headlessly through papermill (`make workbook`).

    python -m lib.workbook [--profile auto|smoke|full] [--only 00 03 ...] [-p NAME VALUE ...] [--timeout MIN]

The profile `auto` is `full` on a CUDA machine and `smoke` elsewhere ($WORKBOOK_PROFILE overrides it); each
notebook gets the parameter SMOKE and the environment variable WORKBOOK_SMOKE to match. Executed notebooks go
to outputs/notebooks/ (full) or outputs/smoke/notebooks/ (smoke). A failing notebook does not stop the others;
the summary table lists each one's status, minutes and key figure (what it passed to
`lib.runs.report_key_figure`), and the exit status is 1 if any failed. A -p name that no selected notebook
declares in its parameters cell is refused before anything runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .runs import outputs_dir, repo_root

PATTERN = "[0-9][0-9]_*.ipynb"


@dataclass
class Outcome:
    name: str
    status: str           # ok | FAILED
    minutes: float
    key_figure: str       # "name = value unit", or "" when the notebook reported none
    detail: str = ""      # for a failure: the exception and where the partial notebook is


def parse_value(text: str):
    """A -p value the way papermill reads it: int, float, bool, None, else the string itself."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def choose_profile(requested: str) -> str:
    """'smoke' or 'full'; 'auto' reads $WORKBOOK_PROFILE, then whether CUDA is available."""
    if requested == "auto":
        requested = os.environ.get("WORKBOOK_PROFILE", "auto").lower()
    if requested == "auto":
        import torch
        requested = "full" if torch.cuda.is_available() else "smoke"
    if requested not in ("smoke", "full"):
        raise SystemExit(f"error: profile must be auto, smoke or full, got {requested!r}")
    return requested


def find_notebooks(folder: Path, only: list[str] | None) -> list[Path]:
    """Numbered notebooks in order; `only` keeps those whose name starts with one of its entries."""
    found = sorted(folder.glob(PATTERN))
    if only:
        found = [nb for nb in found if any(nb.stem.startswith(prefix) for prefix in only)]
        if not found:
            raise SystemExit(f"error: --only {' '.join(only)} matches no notebook in {folder}")
    return found


def parameters_for(notebooks: list[Path], overrides: dict) -> dict[Path, dict]:
    """Each notebook's share of the -p overrides; a name no notebook declares is an error."""
    import papermill

    declared = {nb: set(papermill.inspect_notebook(str(nb))) for nb in notebooks}
    known = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SystemExit(f"error: unknown notebook parameter(s) {unknown}; the selected notebooks declare "
                         f"{sorted(known)} (see each notebook's cell tagged 'parameters')")
    return {nb: {k: v for k, v in overrides.items() if k in names} for nb, names in declared.items()}


def run_one(notebook: Path, output: Path, parameters: dict, smoke: bool, timeout_min: float) -> Outcome:
    """Execute one notebook with papermill; never raises for the notebook's own errors."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    key_file = Path(tempfile.mkstemp(prefix="key-figure-", suffix=".json")[1])
    key_file.write_text("")
    saved = {k: os.environ.get(k) for k in ("WORKBOOK_SMOKE", "WORKBOOK_KEY_FIGURE_FILE")}
    os.environ.update(WORKBOOK_SMOKE="1" if smoke else "0", WORKBOOK_KEY_FIGURE_FILE=str(key_file))
    start, status, detail = time.monotonic(), "ok", ""
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters={"SMOKE": smoke, **parameters},
                                   kernel_name="python3", cwd=str(notebook.parent), progress_bar=False,
                                   execution_timeout=int(timeout_min * 60) if timeout_min else None)
    except Exception as err:  # papermill's execution error, a dead kernel, a timeout: report, go on
        status = "FAILED"
        detail = f"{getattr(err, 'ename', type(err).__name__)}: {str(getattr(err, 'evalue', err))[:200]}"
        detail += f" (partial notebook: {output})"
    finally:
        for k, v in saved.items():  # leave the caller's environment as it was
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Outcome(notebook.stem, status, (time.monotonic() - start) / 60, _read_key_figure(key_file), detail)


def _read_key_figure(path: Path) -> str:
    try:
        record = json.loads(path.read_text() or "null")
    except json.JSONDecodeError:
        record = None
    finally:
        path.unlink(missing_ok=True)
    return f"{record['name']} = {record['value']:.4g} {record['unit']}".rstrip() if record else ""


def summary_table(outcomes: list[Outcome], profile: str) -> str:
    rows = [("notebook", "status", "minutes", "key figure")]
    rows += [(o.name, o.status, f"{o.minutes:.1f}", o.key_figure or "-") for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = sum(o.status != "ok" for o in outcomes)
    return "\n".join([f"workbook summary ({profile} profile)", *lines,
                      f"{len(outcomes) - failed} ok, {failed} failed"])


def main(argv: list[str] | None = None, notebooks_dir: Path | None = None, outputs: Path | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.workbook", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="auto", help="auto | smoke | full (auto: full only with CUDA)")
    parser.add_argument("--only", nargs="+", help="notebook name prefixes to run, e.g. 00 03")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="override a notebook parameter (repeatable), as with papermill -p")
    parser.add_argument("--timeout", type=float, default=0, help="per-cell time limit in minutes (0: none)")
    args = parser.parse_args(argv)
    profile = choose_profile(args.profile)
    notebooks = find_notebooks(notebooks_dir or repo_root() / "notebooks", args.only)
    overrides = {name: parse_value(value) for name, value in args.parameter}
    shares = parameters_for(notebooks, overrides)
    target = (outputs or outputs_dir()) / ("smoke/notebooks" if profile == "smoke" else "notebooks")
    outcomes = []
    for i, notebook in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {notebook.stem} ...", flush=True)
        outcome = run_one(notebook, target / notebook.name, shares[notebook], profile == "smoke", args.timeout)
        print(f"[{i}/{len(notebooks)}] {notebook.stem} {outcome.status} {outcome.minutes:.1f} min"
              f"{'  ' + outcome.detail if outcome.detail else ''}", flush=True)
        outcomes.append(outcome)
    print("\n" + summary_table(outcomes, profile))
    return int(any(o.status != "ok" for o in outcomes))


if __name__ == "__main__":
    sys.exit(main())
