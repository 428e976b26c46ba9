"""A notebook's cell tagged `parameters` as the runner reads it: the names it assigns, their defaults and the
types those allow, and values given on the command line (-p, -y) parsed as papermill parses them and checked
against them before anything runs.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


def parse_value(text: str):
    """A -p value exactly as papermill's own -p reads it: True, False, None, int, float, else the string."""
    constants = {"True": True, "False": False, "None": None}
    if text in constants:
        return constants[text]
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_yaml(text: str) -> dict:
    """A -y mapping, loaded as papermill loads it (YAML's safe loader, dates left as strings)."""
    import yaml
    from papermill.iorw import NoDatesSafeLoader

    mapping = yaml.load(text, Loader=NoDatesSafeLoader) or {}
    if not isinstance(mapping, dict):
        raise SystemExit(f"error: -y expects a YAML mapping such as 'BETAS: [4.0]', got {text!r}")
    return mapping


def collect_overrides(pairs: list[tuple[str, str]], yaml_texts: list[str]) -> dict:
    """The -y mappings, then the -p values on top of them (papermill's precedence)."""
    overrides = {}
    for text in yaml_texts:
        overrides.update(parse_yaml(text))
    return overrides | {name: parse_value(value) for name, value in pairs}


UNKNOWN = object()  # a default that is not a literal (e.g. N = len(CLASSES)): its type is not checked


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned at the top level of the cell tagged `parameters`. (papermill.inspect_notebook skips
    lines whose comment holds an '=', such as `BETAS = [4.0]  # e.g. BETAS=[1.0]`.)"""
    return set(parameter_defaults(notebook))


def parameter_defaults(notebook: Path) -> dict:
    """Each name assigned at the top level of the cell tagged `parameters` -> its literal default, or UNKNOWN."""
    import nbformat

    for cell in nbformat.read(notebook, as_version=4).cells:
        if "parameters" in cell.metadata.get("tags", []):
            code = "\n".join(
                line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))
            )
            try:
                body = ast.parse(code).body
            except SyntaxError as err:
                raise SystemExit(
                    f"error: the parameters cell of {notebook} is not valid Python: {err}"
                ) from None
            pairs = [
                (t, _literal(node.value))
                for node in body
                if isinstance(node, ast.Assign)
                for t in node.targets
            ]
            pairs += [(node.target, _annotated(node)) for node in body if isinstance(node, ast.AnnAssign)]
            return {t.id: value for t, value in pairs if isinstance(t, ast.Name)}
    return {}


def _literal(node: ast.AST | None):
    try:
        return ast.literal_eval(node) if node is not None else UNKNOWN
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return UNKNOWN


@dataclass(frozen=True)
class Typed:
    """A None default whose annotation names what a value must be: `MAX_MINUTES: float | None = None`."""

    kinds: tuple[type, ...]
    text: str  # the annotation as written


TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": tuple}


def _annotated(node: ast.AnnAssign):
    """The literal default of `NAME: type = value`; for a None default, what its annotation allows (Typed), so a
    value of another type is refused as it is for a literal default."""
    default = _literal(node.value)
    if default is not None:
        return default
    parts, kinds = [node.annotation], []
    while parts:
        part = parts.pop()
        if isinstance(part, ast.BinOp) and isinstance(part.op, ast.BitOr):
            parts += [part.left, part.right]
        elif isinstance(part, ast.Subscript):
            parts.append(part.value)  # list[float] -> list
        elif isinstance(part, ast.Name) and part.id in TYPE_NAMES:
            kinds.append(TYPE_NAMES[part.id])
        elif not (isinstance(part, ast.Constant) and part.value is None):
            return None  # an annotation this check does not read: anything goes, as for a plain None default
    return Typed(tuple(kinds), ast.unparse(node.annotation))


def type_mismatch(default, value) -> str | None:
    """Why `value` cannot stand for a parameter whose default is `default` (None when it can): the same type, an
    int for a float, a list for a list or tuple (items checked against the default's first); a None default with
    an annotation (Typed) the annotation's types or None; a plain None or non-literal default accepts anything."""
    if default is None or default is UNKNOWN:
        return None
    if isinstance(default, Typed):
        return (
            None
            if value is None or _fits(value, default.kinds)
            else (f"expects {default.text} (its default is None), got {type(value).__name__} {value!r}")
        )
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            return f"expects a list like {list(default)}, got {type(value).__name__} {value!r}"
        wrong = [type_mismatch(default[0], item) for item in value] if default else []
        return next(
            (f"expects a list of {type(default[0]).__name__}: item {why}" for why in wrong if why), None
        )
    if _fits(value, (type(default),)):
        return None
    return (
        f"expects {type(default).__name__} (its default is {default!r}), got {type(value).__name__} {value!r}"
    )


def _fits(value, kinds: tuple[type, ...]) -> bool:
    """Whether value is one of kinds: an int stands for a float, a list for a tuple, a bool only for a bool."""
    kinds = kinds + ((int,) if float in kinds else ()) + ((list,) if tuple in kinds else ())
    return isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))


def check_types(notebook: Path, defaults: dict, given: dict) -> None:
    """Refuse a given value whose type does not fit the notebook's default, naming the parameter."""
    for name, value in given.items():
        why = type_mismatch(defaults.get(name, UNKNOWN), value)
        if why:
            raise SystemExit(
                f"error: notebook parameter {name} of {notebook.stem} {why}. -p reads 4 as int, 4.0 as "
                "float, True/False/None as such and anything else as a string; give lists with -y, "
                "e.g. -y 'BETAS: [4.0]'"
            )


def parameters_for(notebooks: list[Path], overrides: dict) -> dict[Path, dict]:
    """Each notebook's share of the overrides; a name no notebook declares, or a value of the wrong type, is an
    error (before anything runs)."""
    defaults = {nb: parameter_defaults(nb) for nb in notebooks}
    known = set().union(*defaults.values())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SystemExit(
            f"error: unknown notebook parameter(s) {unknown}; the selected notebooks declare "
            f"{sorted(known)} (see each notebook's cell tagged 'parameters')"
        )
    shares = {nb: {k: v for k, v in overrides.items() if k in names} for nb, names in defaults.items()}
    for nb, share in shares.items():
        check_types(nb, defaults[nb], share)
    return shares
