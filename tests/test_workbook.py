"""The notebook runner: order, failures that do not stop the rest, parameters, profiles, the summary."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

from lib.workbook import parameters
from lib.workbook import runner as workbook

PARAMETERS = (
    "SMOKE = False\nSCALE = 1\nBETAS = [1.0]  # e.g. BETAS=[4.0]: papermill's inspector skips this line"
)


def write_notebook(path, *cells, parameters=PARAMETERS):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    tagged = nbformat.v4.new_code_cell(parameters)
    tagged.metadata["tags"] = ["parameters"]
    nb.cells = [tagged] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


@pytest.fixture
def books(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(
        folder / "00_first.ipynb",
        "from lib.workbook.results import report_key_figure\n"
        "report_key_figure('scaled', 2.5 * SCALE * sum(BETAS), 'units')",
    )
    write_notebook(folder / "01_broken.ipynb", "raise ValueError('on purpose')")
    write_notebook(
        folder / "02_last.ipynb",
        "import os\nassert SMOKE == (os.environ['WORKBOOK_SMOKE'] == '1')\n"
        "open('ran.txt', 'w').write(str(SMOKE))",
        parameters="SMOKE = False",
    )
    (folder / "notes.ipynb").write_text("not a numbered notebook, never run")
    return folder


def test_runs_all_in_order_continues_after_a_failure_and_exits_nonzero(books, tmp_path, capsys):
    code = workbook.main(
        ["--profile", "smoke", "-p", "SCALE", "4"], notebooks_dir=books, outputs=tmp_path / "out"
    )
    out = capsys.readouterr().out
    assert code == 1
    assert out.index("00_first") < out.index("01_broken") < out.index("02_last")
    # In [3]: the raising cell comes after the parameters cell and the one papermill injects
    assert re.search(r"In \[3\] ValueError: on purpose \(partial notebook: .*01_broken.ipynb\)", out)
    assert "2 ok, 1 failed" in out
    table = out[out.index("workbook summary (smoke profile)") :].splitlines()
    assert table[3].split()[:2] == ["00_first", "ok"] and table[3].endswith("scaled = 10 units")  # SCALE=4
    assert table[4].split()[:2] == ["01_broken", "FAILED"] and table[4].endswith("-")  # no key figure
    assert (books / "ran.txt").read_text() == "True"  # the notebook after the failure still ran
    assert sorted(p.name for p in (tmp_path / "out" / "smoke" / "notebooks").iterdir()) == [
        "00_first.ipynb",
        "01_broken.ipynb",
        "02_last.ipynb",
    ]  # the failed one is kept, partially executed


def test_full_profile_writes_outputs_notebooks_and_passes_smoke_false(books, tmp_path):
    code = workbook.main(["--profile", "full", "--only", "02"], notebooks_dir=books, outputs=tmp_path / "out")
    assert code == 0
    assert (books / "ran.txt").read_text() == "False"
    assert (tmp_path / "out" / "notebooks" / "02_last.ipynb").exists()


def test_unknown_parameter_is_refused_before_anything_runs(books, tmp_path):
    with pytest.raises(SystemExit, match=r"unknown notebook parameter\(s\) \['BETA'\].*'BETAS', 'SCALE'"):
        workbook.main(
            ["--profile", "smoke", "-p", "BETA", "4.0"], notebooks_dir=books, outputs=tmp_path / "out"
        )
    assert not (tmp_path / "out").exists() and not (books / "ran.txt").exists()


def test_parameters_go_only_to_notebooks_that_declare_them(books):
    assert parameters.declared_parameters(books / "00_first.ipynb") == {"SMOKE", "SCALE", "BETAS"}
    shares = workbook.parameters_for(sorted(books.glob("0*.ipynb")), {"SCALE": 3, "BETAS": [2.0]})
    assert {nb.stem: share for nb, share in shares.items()} == {
        "00_first": {"SCALE": 3, "BETAS": [2.0]},
        "01_broken": {"SCALE": 3, "BETAS": [2.0]},
        "02_last": {},
    }


def test_yaml_parameters_carry_lists_and_p_wins_over_y(books, tmp_path, capsys):
    argv = ["--profile", "smoke", "--only", "00", "-y", "{BETAS: [2.0, 1.0], SCALE: 3}", "-p", "SCALE", "2"]
    assert workbook.main(argv, notebooks_dir=books, outputs=tmp_path / "out") == 0
    assert "scaled = 15 units" in capsys.readouterr().out  # 2.5 * 2 * (2.0 + 1.0)


@pytest.mark.parametrize(
    "text, value",
    [
        ("4", 4),
        ("-2", -2),
        ("4.0", 4.0),
        ("1e-3", 1e-3),
        ("True", True),
        ("False", False),
        ("None", None),
        ("true", "true"),
        ("beta", "beta"),
    ],
)
def test_parameter_values_are_typed_like_papermill(text, value):  # papermill's -p is case-sensitive too
    assert parameters.parse_value(text) == value and type(parameters.parse_value(text)) is type(value)


def test_profile_choice(monkeypatch):
    monkeypatch.setenv("WORKBOOK_PROFILE", "full")
    assert workbook.choose_profile("auto") == "full"
    assert workbook.choose_profile("smoke") == "smoke"
    with pytest.raises(SystemExit, match="choose one of"):
        workbook.choose_profile("medium")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-p", "SCALE", "beta"], r"SCALE of 00_first expects int \(its default is 1\), got str 'beta'"),
        (["-p", "SCALE", "2.5"], "SCALE of 00_first expects int"),
        (["-p", "SCALE", "True"], "SCALE of 00_first expects int"),
        (["-y", "BETAS: 4.0"], r"BETAS of 00_first expects a list like \[1.0\], got float 4.0"),
        (["-y", "BETAS: [4.0, four]"], "BETAS of 00_first expects a list of float: item expects float"),
        (["-p", "NAME", "3"], "NAME of 00_first expects str"),
    ],
)
def test_a_parameter_of_the_wrong_type_is_refused_before_anything_runs(books, tmp_path, argv, message):
    write_notebook(books / "00_first.ipynb", "pass", parameters=PARAMETERS + "\nNAME = 'x'")
    with pytest.raises(SystemExit, match=message):
        workbook.main(["--profile", "smoke", *argv], notebooks_dir=books, outputs=tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (books / "ran.txt").exists()


def test_values_that_fit_their_defaults_pass_the_type_check(books):
    write_notebook(
        books / "00_first.ipynb",
        "pass",
        parameters=PARAMETERS + "\nSMOOTH = None\nRATE = 0.5\nDERIVED = bool(SCALE)",
    )
    shares = workbook.parameters_for(
        [books / "00_first.ipynb"],
        {"RATE": 2, "SMOOTH": "anything", "BETAS": [2, 4.5], "DERIVED": "not checked", "SCALE": 3},
    )
    assert shares[books / "00_first.ipynb"]["RATE"] == 2


def test_readers_run_last_and_a_notebook_that_should_show_figures_but_shows_none_fails(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "00_reader.ipynb", "x = 1", parameters="SMOKE = False")
    write_notebook(folder / "01_blank.ipynb", "print('no figure')", parameters="SMOKE = False")
    for name, meta in (("00_reader", {"reads_results": True}), ("01_blank", {"shows_figures": True})):
        nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
        nb.metadata["workbook"] = meta
        nbformat.write(nb, folder / f"{name}.ipynb")
    code = workbook.main(["--profile", "smoke"], notebooks_dir=folder, outputs=tmp_path / "out")
    out = capsys.readouterr().out
    assert code == 1 and out.index("01_blank ...") < out.index("00_reader ...")
    assert "01_blank FAILED" in out and "showed no figure" in out
    assert "00_reader read the results files" in out


def test_figures_display_as_images_under_the_agg_backend(tmp_path, monkeypatch, capsys):
    """MPLBACKEND=Agg (make test, headless servers) must not make notebooks lose their figures."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(
        folder / "00_plot.ipynb",
        "import numpy as np\nfrom IPython.display import display\n"
        "from lib import viz\ndisplay(viz.show_grid(np.zeros((4, 3, 8, 8), np.uint8)))",
        parameters="SMOKE = False",
    )
    nb = nbformat.read(folder / "00_plot.ipynb", as_version=4)
    nb.metadata["workbook"] = {"shows_figures": True}
    nbformat.write(nb, folder / "00_plot.ipynb")
    assert workbook.main(["--profile", "smoke"], notebooks_dir=folder, outputs=tmp_path / "out") == 0
    assert workbook.count_figures(tmp_path / "out" / "smoke" / "notebooks" / "00_plot.ipynb") == 1


def test_workbook_smoke_env_picks_the_profile_when_auto(monkeypatch):
    monkeypatch.delenv("WORKBOOK_PROFILE", raising=False)
    monkeypatch.setenv("WORKBOOK_SMOKE", "0")
    assert workbook.choose_profile("auto") == "full"
    monkeypatch.setenv("WORKBOOK_SMOKE", "1")
    assert workbook.choose_profile("auto") == "smoke"


def test_smoke_notice_names_the_parameters_given():
    assert workbook.smoke_notice({}) == ""
    assert "MAX_MINUTES, STEPS passed on" in workbook.smoke_notice({"STEPS": 3, "MAX_MINUTES": 1.0})


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["-p", "MAX_MINUTES", "abc"],
            r"MAX_MINUTES of 00_first expects float \| None \(its default is None\)",
        ),
        (["-p", "MAX_MINUTES", "True"], "MAX_MINUTES of 00_first expects float"),
        (["-p", "RUN_NAME", "3"], r"RUN_NAME of 00_first expects str \| None"),
        (["-p", "PROFILE", "short"], "choose the profile with --profile"),
        (["-p", "SMOKE", "True"], "choose the profile with --profile"),
    ],
)
def test_an_annotated_none_default_checks_its_type_and_the_profile_comes_from_profile(
    books, tmp_path, argv, message
):
    """`MAX_MINUTES: float | None = None` (None: the profile decides) is type-checked like a literal default."""
    extra = "\nMAX_MINUTES: float | None = None\nRUN_NAME: str | None = None\nANYTHING = None"
    write_notebook(books / "00_first.ipynb", "pass", parameters=PARAMETERS + extra)
    with pytest.raises(SystemExit, match=message):
        workbook.main(["--profile", "smoke", *argv], notebooks_dir=books, outputs=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    shares = workbook.parameters_for(
        [books / "00_first.ipynb"], {"MAX_MINUTES": 3, "RUN_NAME": None, "ANYTHING": [1, "a"]}
    )
    assert shares[books / "00_first.ipynb"]["MAX_MINUTES"] == 3  # an int stands for a float, None for None


def test_the_runner_passes_the_profile_and_a_matching_smoke(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    code = "open('seen.txt', 'w').write(f'{PROFILE} {SMOKE}')"
    write_notebook(folder / "00_seen.ipynb", code, parameters='PROFILE = "auto"\nSMOKE: bool | None = None')
    assert workbook.main(["--profile", "short"], notebooks_dir=folder, outputs=tmp_path / "out") == 0
    assert (folder / "seen.txt").read_text() == "short False"


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def colab_cells() -> dict[str, str]:
    """Each notebook's first code cell: the Colab setup, which must run before lib is importable."""
    return {
        path.stem: next(
            "".join(c["source"]) for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
        )
        for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    }


def test_every_notebook_opens_with_the_same_colab_cell_that_imports_no_lib():
    cells = colab_cells()
    assert len(cells) == 7 and len(set(cells.values())) == 1, "the Colab cells differ between notebooks"
    assert "lib" not in {
        part for line in next(iter(cells.values())).splitlines() for part in line.split()[:2]
    }


def test_the_colab_cell_clones_and_installs_only_on_colab(monkeypatch):
    source, calls = colab_cells()["02_ncsn"], []
    monkeypatch.setattr(subprocess, "run", lambda command, check: calls.append(command))
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(source, {})
    assert calls == []  # not on Colab: nothing happens
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.delenv("WORKBOOK_REPO_URL", raising=False)
    isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: False if p == "/content/workbook" else isdir(p))
    with pytest.raises(RuntimeError, match="set REPO_URL to this repository's git URL, or upload it"):
        exec(source, {})
    exec(source, {"REPO_URL": "https://example.org/workbook.git"})
    assert calls == [
        ["git", "clone", "--depth", "1", "https://example.org/workbook.git", "/content/workbook"],
        [sys.executable, "-m", "pip", "install", "-q", "-e", "/content/workbook"],
    ]
    assert sys.path[0] == "/content/workbook"
    calls.clear()
    monkeypatch.setattr(os.path, "isdir", lambda p: True)  # uploaded or cloned before: installed, not cloned
    exec(source, {})
    assert [c[0] for c in calls] == [sys.executable]


def test_autoreload_is_a_no_op_outside_ipython():
    from lib.workbook.notebook import autoreload

    assert autoreload() is False


def test_the_classifier_is_ready_before_the_first_notebook_that_measures_fd_c10(
    tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    names = {"00_data": {}, "02_ncsn": {"uses_classifier": True}, "03_vae": {}, "06_compare": {}}
    names["06_compare"] = {"uses_classifier": True, "reads_results": True}
    for name, meta in names.items():
        write_notebook(folder / f"{name}.ipynb", "x = 1", parameters="SMOKE = False")
        nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
        nb.metadata["workbook"] = meta
        nbformat.write(nb, folder / f"{name}.ipynb")
    order = []

    def fake_run(notebook, output, parameters, profile, timeout_min):
        order.append(notebook.stem)
        return workbook.Outcome(notebook.stem, "ok", 0.0, "")

    def fake_classifier(profile):
        order.append(f"classifier ({profile})")
        return "fd_c10 classifier: ready"

    monkeypatch.setattr(workbook, "run_one", fake_run)
    monkeypatch.setattr(workbook, "prepare_classifier", fake_classifier)
    assert workbook.main(["--profile", "smoke"], notebooks_dir=folder, outputs=tmp_path / "out") == 0
    assert order == ["00_data", "classifier (smoke)", "02_ncsn", "03_vae", "06_compare"]  # once, before 02
    order.clear()
    assert (
        workbook.main(["--profile", "smoke", "--only", "06"], notebooks_dir=folder, outputs=tmp_path / "o")
        == 0
    )
    assert order == ["classifier (smoke)", "06_compare"]
    order.clear()
    assert (
        workbook.main(["--profile", "smoke", "--only", "00", "03"], notebooks_dir=folder, outputs=tmp_path)
        == 0
    )
    assert order == ["00_data", "03_vae"]  # no notebook measures fd_c10: no classifier
    assert "fd_c10 classifier: ready" in capsys.readouterr().out


def test_preparing_the_classifier_loads_a_stored_one_and_reports_a_failure(tmp_path, monkeypatch):
    from lib.metrics import classifier

    monkeypatch.setenv("WORKBOOK_OUTPUTS", str(tmp_path))
    stored = types.SimpleNamespace(test_accuracy=0.5)
    calls = []
    monkeypatch.setattr(classifier, "ensure_classifier", lambda **kw: calls.append(kw) or stored)
    (tmp_path / "smoke" / "classifier").mkdir(parents=True)
    (tmp_path / "smoke" / "classifier" / "classifier.json").write_text("{}")
    line = workbook.prepare_classifier("smoke")
    assert calls == [{"smoke": True, "log": None}]
    assert "tiny" in line and "50.0%" in line and "loaded" in line
    assert "trained" in workbook.prepare_classifier("full") and calls[-1]["smoke"] is False

    def broken(**kw):
        raise FileNotFoundError("no CIFAR-10 here")

    monkeypatch.setattr(classifier, "ensure_classifier", broken)
    assert "FAILED (FileNotFoundError: no CIFAR-10 here)" in workbook.prepare_classifier("smoke")


def test_an_executed_notebook_keeps_each_bar_last_state_and_the_order_of_its_prints(tmp_path):
    stream = lambda name, text: {"output_type": "stream", "name": name, "text": text}  # noqa: E731
    cells = [
        {
            "cell_type": "code",
            "source": "",
            "outputs": [
                stream("stderr", "run:   0%| 0/9\r"),
                stream("stderr", "run:  50%| 4/9\r"),
                stream("stderr", ["run: 100%| 9/9\n"]),
                stream("stdout", "plan: 9 steps\n"),
                {"output_type": "display_data", "data": {"image/png": "x"}, "metadata": {}},
                stream("stdout", "done\n"),
            ],
        },
        {"cell_type": "markdown", "source": "text"},
    ]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert workbook.coalesce_streams(path) == 2
    outputs = json.loads(path.read_text())["cells"][0]["outputs"]
    assert [o.get("name", o["output_type"]) for o in outputs] == [
        "stderr",
        "stdout",
        "display_data",
        "stdout",
    ]
    assert "".join(outputs[0]["text"]) == "run: 100%| 9/9\n" and "".join(outputs[3]["text"]) == "done\n"
