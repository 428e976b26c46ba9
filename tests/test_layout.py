"""The shape of lib/ (the folders are the layers): lower layers never import higher ones, there is no import cycle, and the
package docstring names every module, so a newcomer's map of lib/ is complete."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import lib

LIB = Path(lib.__file__).parent
LAYERS = [  # a module may import its own package and the layers before it, never a later one
    {"common"},
    {"data"},
    {"nets", "dists", "losses", "samplers"},
    {"train"},
    {"models"},
    {"metrics"},
    {"viz"},
    {"workbook", "bench", "doctor"},  # doctor: the `python -m lib.doctor` entry of lib.bench.doctor
]


def _modules() -> dict[str, Path]:
    """'data', 'models.ncsn', 'nets.vae', ... -> path, for every module of lib/."""
    found = {}
    for path in LIB.rglob("*.py"):
        parts = path.relative_to(LIB).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] in ("__init__", "__main__") else parts)
        if name and parts[-1] != "__main__":
            found[name] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    """The lib modules `path` imports (absolute or relative, also inside functions), except in a top-level
    `if __name__ == "__main__":` block (an entry point, not a dependency)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text())
    tree.body = [n for n in tree.body if not (isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name[len("lib.") :] for a in node.names if a.name.startswith("lib.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if not (node.module == "lib" or (node.module or "").startswith("lib.")):
                    continue
                base = node.module.split(".")[1:]
            else:
                base = package[: len(package) - node.level + 1] + (
                    node.module.split(".") if node.module else []
                )
            out |= {".".join(base)} if base else {a.name for a in node.names}
    return out


def _layer(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def test_every_module_has_a_layer_and_imports_only_lower_layers():
    for name, path in _modules().items():
        here = _layer(name)
        for target in _imports(name, path):
            if target.split(".")[0] == name.split(".")[0]:
                continue  # within one package (models.ncsn -> models.vae is not a layer question)
            assert _layer(target) <= here, (
                f"lib.{name} (layer {here}) imports lib.{target} (layer {_layer(target)})"
            )


def test_there_is_no_import_cycle():
    graph = {}  # top-level module or package -> the others it imports
    for name, path in _modules().items():
        top = name.split(".")[0]
        graph.setdefault(top, set()).update(
            t.split(".")[0] for t in _imports(name, path) if t.split(".")[0] != top
        )
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            assert state.get(target) != "open", "import cycle: " + " -> ".join(stack + [node, target])
            if target not in state:
                visit(target, stack + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_the_package_docstring_names_every_module():
    tops = {name.split(".")[0] for name in _modules()}
    missing = sorted(t for t in tops if f"{t}" not in lib.__doc__)
    assert not missing, f"lib/__init__.py does not mention {missing}"


def test_no_model_module_imports_the_loop():
    """A family module reads its presets' TrainConfig from lib.train.config, never the loop (statically)."""
    for name, path in _modules().items():
        if name.split(".")[0] == "models":
            loop = sorted(t for t in _imports(name, path) if t.startswith("train") and t != "train.config")
            assert not loop, f"lib.{name} imports {loop}: a model needs lib.train.config only"


def test_importing_the_models_leaves_the_loop_unloaded():
    """Importing every family pulls in neither the loop nor its DDP, lock and signal machinery (a fresh
    interpreter, so other tests' imports do not count)."""
    code = (
        "import sys, lib.models, lib.train; "
        "loaded = sorted(m for m in sys.modules if m.startswith('lib.train.') and m != 'lib.train.config'); "
        "assert not loaded, loaded; lib.train.train; assert 'lib.train.loop' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=LIB.parent)


def test_the_lib_root_is_small():
    """The folders are the architecture: a dozen or so entries at the root of lib/, not a flat room."""
    entries = sorted(p.name for p in LIB.iterdir() if p.name != "__pycache__" and p.name != "__init__.py")
    assert len(entries) <= 13, entries


def _lines(folder: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in folder.rglob("*.py"))


def test_lib_is_small_and_the_workbook_layer_smaller():
    """The design asks for a small lib of architectures, losses and training loops: what one notebook alone uses
    lives in that notebook. Limits from the notebook-first restructuring (13,292 and 3,504 lines before it)."""
    assert _lines(LIB) <= 11_000, f"lib/ has {_lines(LIB):,} lines"
    assert _lines(LIB / "workbook") <= 1_700, f"lib/workbook/ has {_lines(LIB / 'workbook'):,} lines"


NOTEBOOKS = LIB.parent / "notebooks"
MAX_CELL_LINES = 30
SCIENCE = {  # experiment notebook -> the lib modules one of its code cells must compute its science through
    "02_ncsn": ("losses", "samplers"),
    "03_beta_vae_sweep": ("losses", "dists"),
    "04_iwae_k_comparison": ("losses", "dists"),
    "05_nvae_stages": ("losses", "dists"),
}


def test_each_experiment_notebook_computes_its_science_in_a_cell_below_its_equation():
    """Notebook-first: the objective, bound or sampler is computed in a code cell through lib.losses /
    lib.samplers / lib.dists (imported by the notebook), and the markdown cell right above it gives the equation
    (a line with '=' in it)."""
    for name, modules in SCIENCE.items():
        cells = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]
        source = ["".join(c["source"]) for c in cells]
        imported = "\n".join(s for s, c in zip(source, cells) if c["cell_type"] == "code" and "import" in s)
        found = [
            i
            for i, (s, c) in enumerate(zip(source, cells))
            if c["cell_type"] == "code" and any(f"{m}." in s and m in imported for m in modules)
        ]
        assert found, f"{name}: no code cell calls {' / '.join('lib.' + m for m in modules)}"
        explained = [
            i for i in found if i and cells[i - 1]["cell_type"] == "markdown" and "=" in source[i - 1]
        ]
        assert explained, f"{name}: no science cell has its equation in the markdown right above it"


def _code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_no_notebook_code_cell_is_longer_than_30_lines():
    """A code cell is a readable step of the story or of the notebook's own analysis, at most 30 lines. The one
    exception is each
    notebook's cell tagged `parameters`: papermill and the runner read exactly one tagged cell, so it lists every
    knob; it may be longer, but holds nothing else: one single-line assignment a line, no logic."""
    too_long = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        for cell in _code_cells(path):
            source = "".join(cell["source"])
            if "parameters" in cell["metadata"].get("tags", []):
                body = ast.parse(source).body
                one_a_line = all(
                    isinstance(n, (ast.Assign, ast.AnnAssign)) and n.lineno == n.end_lineno for n in body
                )
                assert one_a_line and len(body) == len(source.splitlines()), (
                    f"{path.name}: the parameters cell holds one single-line assignment a line and nothing else"
                )
            elif len(source.splitlines()) > MAX_CELL_LINES:
                too_long.append(f"{path.stem} cell {cell['id']}: {len(source.splitlines())} lines")
    assert not too_long, f"code cells over {MAX_CELL_LINES} lines (split them): {too_long}"


def test_notebooks_are_committed_with_outputs_cleared():
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        ran = [c["id"] for c in _code_cells(path) if c["outputs"] or c["execution_count"] is not None]
        assert not ran, f"{path.name}: clear the outputs of cells {ran} before committing"
