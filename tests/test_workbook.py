"""The notebook runner: order, failures that do not stop the rest, parameters, profiles, the summary."""
from __future__ import annotations

import nbformat
import pytest

from lib import workbook


def write_notebook(path, *cells, parameters="SMOKE = False\nSCALE = 1"):
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
    write_notebook(folder / "00_first.ipynb", "from lib.runs import report_key_figure\n"
                   "report_key_figure('scaled', 2.5 * SCALE, 'units')")
    write_notebook(folder / "01_broken.ipynb", "raise ValueError('on purpose')")
    write_notebook(folder / "02_last.ipynb", "import os\nassert SMOKE == (os.environ['WORKBOOK_SMOKE'] == '1')\n"
                   "open('ran.txt', 'w').write(str(SMOKE))", parameters="SMOKE = False")
    (folder / "notes.ipynb").write_text("not a numbered notebook, never run")
    return folder


def test_runs_all_in_order_continues_after_a_failure_and_exits_nonzero(books, tmp_path, capsys):
    code = workbook.main(["--profile", "smoke", "-p", "SCALE", "4"], notebooks_dir=books, outputs=tmp_path / "out")
    out = capsys.readouterr().out
    assert code == 1
    assert out.index("00_first") < out.index("01_broken") < out.index("02_last")
    assert "ValueError: on purpose" in out and "1 failed" in out and "2 ok" in out
    assert "scaled = 10 units" in out                          # the key figure, with SCALE=4 applied
    assert (books / "ran.txt").read_text() == "True"           # the notebook after the failure still ran
    assert sorted(p.name for p in (tmp_path / "out" / "smoke" / "notebooks").iterdir()) == [
        "00_first.ipynb", "01_broken.ipynb", "02_last.ipynb"]  # the failed one is kept, partially executed


def test_full_profile_writes_outputs_notebooks_and_passes_smoke_false(books, tmp_path):
    code = workbook.main(["--profile", "full", "--only", "02"], notebooks_dir=books, outputs=tmp_path / "out")
    assert code == 0
    assert (books / "ran.txt").read_text() == "False"
    assert (tmp_path / "out" / "notebooks" / "02_last.ipynb").exists()


def test_unknown_parameter_is_refused_before_anything_runs(books, tmp_path):
    with pytest.raises(SystemExit, match=r"unknown notebook parameter\(s\) \['BETA'\].*'SCALE'"):
        workbook.main(["--profile", "smoke", "-p", "BETA", "4.0"], notebooks_dir=books, outputs=tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (books / "ran.txt").exists()


def test_parameters_go_only_to_notebooks_that_declare_them(books):
    shares = workbook.parameters_for(sorted(books.glob("0*.ipynb")), {"SCALE": 3})
    assert {nb.stem: share for nb, share in shares.items()} == {
        "00_first": {"SCALE": 3}, "01_broken": {"SCALE": 3}, "02_last": {}}


@pytest.mark.parametrize("text, value", [("4", 4), ("4.0", 4.0), ("True", True), ("false", False),
                                         ("None", None), ("beta", "beta"), ("1e-3", 1e-3)])
def test_parameter_values_are_typed_like_papermill(text, value):
    assert workbook.parse_value(text) == value and type(workbook.parse_value(text)) is type(value)


def test_profile_choice(monkeypatch):
    monkeypatch.setenv("WORKBOOK_PROFILE", "full")
    assert workbook.choose_profile("auto") == "full"
    assert workbook.choose_profile("smoke") == "smoke"
    with pytest.raises(SystemExit, match="profile must be"):
        workbook.choose_profile("medium")
