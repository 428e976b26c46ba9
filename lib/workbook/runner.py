"""Run the workbook: every numbered notebook, in order, headlessly through papermill (`make workbook`).

    python -m lib.workbook [--profile auto|smoke|short|full|cpu] [--only 00 03 ...] [-p NAME VALUE ...] [-y YAML]
                           [--timeout MIN]

Profiles: smoke (CPU and CI: checks code, not science), short (one H100-class GPU, each notebook about 8 minutes
with sampling and evaluation), full (real budgets, hours), cpu (real runs on a 2-4 core CPU, each notebook about 45
minutes). `auto` reads $WORKBOOK_PROFILE, then $WORKBOOK_SMOKE
(1: smoke, 0: full), then picks `full` on a CUDA machine and `smoke` elsewhere; each notebook gets
$WORKBOOK_PROFILE, $WORKBOOK_SMOKE and the PROFILE and SMOKE parameters to match (-p PROFILE or SMOKE is refused:
use --profile). Executed notebooks go to outputs/notebooks/ (short, full), outputs/notebooks/cpu/ (cpu) or
outputs/smoke/notebooks/ (smoke). A
failing notebook does not stop the others; notebooks whose metadata says they read the others' results (01, 06)
run last, and one whose metadata says it shows figures fails if its execution shows none. Before the first notebook
whose metadata says it uses the fd_c10 classifier (02, 06), the runner loads it, or trains and stores it when none is
stored (lib.metrics.ensure_classifier: the tiny one in smoke), so no notebook reads its fd_c10 as pending. The summary
table lists
each one's status, minutes, figures and key figure (what it passed to `lib.workbook.results.report_key_figure`),
and the exit status is 1 if any failed. -p and -y read values as papermill's own options do (-y for lists:
`-y "BETAS: [4.0]"`); a name that no selected notebook assigns in its cell tagged `parameters` is refused before
anything runs, and so is a value whose type does not fit that cell's default (an int is fine for a float; a None
default takes the types its annotation names, `MAX_MINUTES: float | None = None`, or anything without one); a
name only some declare goes to those only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..common import files, paths
from ..common.paths import PROFILES, repo_root
from .parameters import collect_overrides, parameters_for

PATTERN = "[0-9][0-9]_*.ipynb"


@dataclass
class Outcome:
    name: str
    status: str  # ok | FAILED
    minutes: float
    key_figure: str  # "name = value unit", or "" when the notebook reported none
    detail: str = ""  # for a failure: the exception and where the partial notebook is
    figures: int = 0  # images (image/png outputs) the executed notebook shows


def workbook_metadata(notebook: Path) -> dict:
    """The notebook's metadata["workbook"]: `shows_figures` (true: an execution without any figure fails) and
    `reads_results` (true: it reads what the other notebooks write, so the runner runs it after them)."""
    return json.loads(notebook.read_text()).get("metadata", {}).get("workbook", {})


def readers_last(notebooks: list[Path]) -> list[Path]:
    """The notebooks in order, those that read the others' results (01, 06) moved after the rest."""
    reads = {nb: bool(workbook_metadata(nb).get("reads_results")) for nb in notebooks}
    return [nb for nb in notebooks if not reads[nb]] + [nb for nb in notebooks if reads[nb]]


def uses_classifier(notebook: Path) -> bool:
    """Whether the notebook's metadata says it measures fd_c10 (`uses_classifier`: 02, 06)."""
    return bool(workbook_metadata(notebook).get("uses_classifier"))


def prepare_classifier(profile: str) -> str:
    """Load the fd_c10 classifier of `profile`, or train and store it when none is stored (the tiny one in smoke);
    returns one line saying which. Never raises: a failure is reported and the notebooks say what they miss."""
    from ..metrics import classifier

    smoke = profile == "smoke"
    folder = classifier.classifier_dir(smoke)
    stored = (folder / "classifier.json").is_file()
    start = time.monotonic()
    try:
        trained = classifier.ensure_classifier(smoke=smoke, log=None)
    except Exception as err:  # no data, no memory: the notebooks report fd_c10 as not measured
        return f"fd_c10 classifier: FAILED ({failure_line(err)}); notebooks that use it go on without it"
    how = "loaded" if stored else f"trained in {time.monotonic() - start:.0f} s and stored"
    return f"fd_c10 classifier ({'tiny, ' if smoke else ''}test accuracy {trained.test_accuracy:.1%}): {how} in {folder}"


_OVERWRITTEN = re.compile(r"[^\n]*\r(?=[^\n])")  # a line a carriage return overwrites (a bar's older states)


def coalesce_streams(executed: Path) -> int:
    """Tidy an executed notebook's text the way a live Jupyter shows it: consecutive stream outputs of the same
    name (stdout, stderr) become one, and the states of a progress bar that a carriage return overwrites are
    dropped, so a bar keeps its last state instead of one saved line per update. Returns the outputs removed."""
    nb = json.loads(executed.read_text())
    removed = 0
    for cell in nb.get("cells", []):
        merged = []
        for out in cell.get("outputs", []):
            same = merged and out.get("output_type") == "stream" == merged[-1].get("output_type")
            if same and out.get("name") == merged[-1].get("name"):
                merged[-1]["text"] = "".join(merged[-1]["text"]) + "".join(out["text"])
                removed += 1
            else:
                merged.append(out)
        for out in merged:
            if out.get("output_type") == "stream":
                text = _OVERWRITTEN.sub("", "".join(out["text"]).replace("\r\n", "\n"))
                out["text"] = text.splitlines(keepends=True)
        if "outputs" in cell:
            cell["outputs"] = merged
    files.atomic_write_bytes(executed, (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode())
    return removed


def count_figures(executed: Path) -> int:
    """How many image/png outputs an executed notebook holds (0 when it cannot be read)."""
    try:
        cells = json.loads(executed.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return 0
    return sum("image/png" in out.get("data", {}) for cell in cells for out in cell.get("outputs", []))


def smoke_notice(overrides: dict) -> str:
    """What the runner can say about values given in the smoke profile: a notebook's smoke sizes
    (lib.workbook.profiles) replace the budgets and sizes it gets, and its settings cell prints which."""
    if not overrides:
        return ""
    return (
        f"note: smoke profile: {', '.join(sorted(overrides))} passed on, but a notebook's smoke sizes replace "
        "budgets and sizes (e.g. MAX_MINUTES, STEPS, LR, LATENT_DIM): each notebook prints which it replaced; "
        "run with --profile short or full (or WORKBOOK_SMOKE=0) to apply them"
    )


def refuse_profile_parameters(overrides: dict) -> None:
    """The runner chooses the profile (--profile) and passes PROFILE and SMOKE itself: -p for them is refused."""
    given = sorted({"PROFILE", "SMOKE"} & set(overrides))
    if given:
        raise SystemExit(
            f"error: {', '.join(given)} given with -p/-y: choose the profile with --profile "
            f"({' | '.join(['auto', *PROFILES])}); the runner passes PROFILE and SMOKE to every notebook"
        )


def choose_profile(requested: str) -> str:
    """The profile to run (lib.common.paths.profile: auto reads $WORKBOOK_PROFILE, then $WORKBOOK_SMOKE, then
    picks full with CUDA and smoke without); an unknown one ends the command with the choices."""
    try:
        return paths.profile(requested)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None


def executed_dir(profile: str, outputs: Path | None = None) -> Path:
    """Where the executed notebooks of `profile` go: outputs/notebooks/ (short, full), outputs/notebooks/cpu/
    (cpu: they sit beside a GPU profile's) or outputs/smoke/notebooks/ (smoke); `outputs` replaces outputs/."""
    smoke = profile == "smoke"
    folder = (
        paths.output_dir("notebooks", smoke)
        if outputs is None
        else outputs / ("smoke/notebooks" if smoke else "notebooks")
    )
    return folder / "cpu" if profile == "cpu" else folder


def find_notebooks(folder: Path, only: list[str] | None) -> list[Path]:
    """Numbered notebooks in order; `only` keeps those whose name starts with one of its entries."""
    found = sorted(folder.glob(PATTERN))
    if only:
        found = [nb for nb in found if any(nb.stem.startswith(prefix) for prefix in only)]
        if not found:
            raise SystemExit(f"error: --only {' '.join(only)} matches no notebook in {folder}")
    return found


class _SkipInspectorWarnings(logging.Filter):
    """Drops papermill's warnings from its own parameter inspection: it misreads some lines (see
    lib.workbook.parameters.declared_parameters), and the runner has checked every name before running anything."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Passed unknown parameter", "Unable to parse line"))


QUIET = _SkipInspectorWarnings()
# The kernel runs on this machine for this process only: its "running over TCP without encryption" warning on every
# notebook says nothing a reader can act on, so the kernel logs errors only (a notebook's own output is unaffected).
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


def run_one(notebook: Path, output: Path, parameters: dict, profile: str, timeout_min: float) -> Outcome:
    """Execute one notebook with papermill under `profile` ($WORKBOOK_PROFILE, $WORKBOOK_SMOKE and the SMOKE
    parameter match it); never raises for the notebook's own errors."""
    import papermill

    smoke = profile == "smoke"

    for name in ("papermill", "papermill.translators"):  # a logger's filter sees only its own records
        logging.getLogger(name).addFilter(QUIET)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, key_name = tempfile.mkstemp(prefix="key-figure-", suffix=".json")
    os.close(fd)  # stays empty unless the notebook calls report_key_figure
    key_file = Path(key_name)
    saved = {k: os.environ.get(k) for k in ("WORKBOOK_SMOKE", "WORKBOOK_PROFILE", "WORKBOOK_KEY_FIGURE_FILE")}
    os.environ.update(
        WORKBOOK_SMOKE="1" if smoke else "0", WORKBOOK_PROFILE=profile, WORKBOOK_KEY_FIGURE_FILE=str(key_file)
    )
    start, status, detail = time.monotonic(), "ok", ""
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters={"PROFILE": profile, "SMOKE": smoke, **parameters},
            kernel_name="python3",
            cwd=str(notebook.parent),
            progress_bar=False,
            log_output=False,
            execution_timeout=int(timeout_min * 60) or None,
            extra_arguments=KERNEL_ARGUMENTS,
        )
    except Exception as err:  # papermill's execution error, a dead kernel, a timeout: report, go on
        status, detail = "FAILED", f"{failure_line(err)} (partial notebook: {output})"
    finally:
        for k, v in saved.items():  # leave the caller's environment as it was
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if output.is_file():
        coalesce_streams(output)  # a bar's last state, not one saved line per update
    figures = count_figures(output)
    if status == "ok" and figures == 0 and workbook_metadata(notebook).get("shows_figures"):
        backend = os.environ.get("MPLBACKEND")
        status = "FAILED"
        detail = f"showed no figure although it should (MPLBACKEND={backend!r}; executed notebook: {output})"
    return Outcome(
        notebook.stem, status, (time.monotonic() - start) / 60, _read_key_figure(key_file), detail, figures
    )


def failure_line(err: Exception) -> str:
    """One short line: where the notebook failed (its In [n]) and the exception's name and message."""
    cell = f"In [{err.exec_count}] " if getattr(err, "exec_count", None) is not None else ""
    message = " ".join(str(getattr(err, "evalue", err)).split())  # one line, however long the traceback
    return f"{cell}{getattr(err, 'ename', type(err).__name__)}: {message[:160]}"


def _read_key_figure(path: Path) -> str:
    try:
        record = json.loads(path.read_text() or "null")
    except json.JSONDecodeError:
        record = None
    finally:
        path.unlink(missing_ok=True)
    return f"{record['name']} = {record['value']:.4g} {record['unit']}".rstrip() if record else ""


def summary_table(outcomes: list[Outcome], profile: str, readers: list[str] = ()) -> str:
    """The table of notebook, status, minutes, figures and key figure; `readers` (notebooks that read the others'
    results) get a line saying what they read."""
    rows = [("notebook", "status", "minutes", "figures", "key figure")]
    rows += [(o.name, o.status, f"{o.minutes:.1f}", str(o.figures), o.key_figure or "-") for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = sum(o.status != "ok" for o in outcomes)
    notes = [
        f"{', '.join(readers)} read the results files of the others ({profile} profile), so they ran last"
    ]
    head, tail = f"workbook summary ({profile} profile)", f"{len(outcomes) - failed} ok, {failed} failed"
    return "\n".join([head, *lines, tail, *(notes if readers else [])])


def main(
    argv: list[str] | None = None, notebooks_dir: Path | None = None, outputs: Path | None = None
) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.workbook", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--profile",
        default="auto",
        choices=("auto", *PROFILES),
        help="smoke: small and fast (CPU, CI); short: one H100-class GPU, about 8 minutes a "
        "notebook; full: real budgets (hours); cpu: real runs on a 2-4 core CPU, about 45 minutes a notebook; "
        "auto: full with CUDA, else smoke",
    )
    parser.add_argument("--only", nargs="+", help="notebook name prefixes to run, e.g. 00 03")
    parser.add_argument(
        "-p",
        "--parameters",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="override a notebook parameter (repeatable), as with papermill -p",
    )
    parser.add_argument(
        "-y",
        "--parameters_yaml",
        action="append",
        default=[],
        metavar="YAML",
        help="parameters as a YAML mapping (repeatable), as with papermill -y: 'BETAS: [4.0]'",
    )
    parser.add_argument("--timeout", type=float, default=0, help="per-cell time limit in minutes (0: none)")
    args = parser.parse_args(argv)
    profile = choose_profile(args.profile)
    notebooks = readers_last(find_notebooks(notebooks_dir or repo_root() / "notebooks", args.only))
    overrides = collect_overrides(args.parameters, args.parameters_yaml)
    refuse_profile_parameters(overrides)
    shares = parameters_for(notebooks, overrides)
    if profile == "smoke" and smoke_notice(overrides):
        print(smoke_notice(overrides), flush=True)
    target = executed_dir(profile, outputs)
    outcomes = []
    for i, notebook in enumerate(notebooks, 1):
        if uses_classifier(notebook) and not any(uses_classifier(nb) for nb in notebooks[: i - 1]):
            print(prepare_classifier(profile), flush=True)  # before the first notebook that measures fd_c10
        print(f"[{i}/{len(notebooks)}] {notebook.stem} ...", flush=True)
        outcome = run_one(notebook, target / notebook.name, shares[notebook], profile, args.timeout)
        print(
            f"[{i}/{len(notebooks)}] {notebook.stem} {outcome.status} {outcome.minutes:.1f} min"
            f"{'  ' + outcome.detail if outcome.detail else ''}",
            flush=True,
        )
        outcomes.append(outcome)
    readers = [nb.stem for nb in notebooks if workbook_metadata(nb).get("reads_results")]
    print("\n" + summary_table(outcomes, profile, readers))
    return int(any(o.status != "ok" for o in outcomes))
