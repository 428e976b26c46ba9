"""Whether an interpreter already has what the workbook needs: pyproject.toml's dependencies (and extras) against the
installed distributions, so `make ... VENV=` on a machine with a preinstalled torch (a GPU image, Colab, a conda
env; possibly offline) installs nothing when nothing is missing and names what is when something is.

    python -m lib.common.requirements [EXTRA ...]   # exit 0: all present; 1: prints each missing or too-old one
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from .paths import repo_root

try:  # pip vendors both, so an interpreter that can install anything has them
    from packaging.requirements import Requirement
except ImportError:  # pragma: no cover - an environment without packaging
    from pip._vendor.packaging.requirements import Requirement

try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib


def declared(extras: list[str] | tuple[str, ...] = (), pyproject: Path | None = None) -> list[Requirement]:
    """The dependencies pyproject.toml declares, plus those of the named extras (an unknown extra is an error)."""
    project = tomllib.loads((pyproject or repo_root() / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise ValueError(f"unknown extra(s) {unknown}; pyproject.toml declares {sorted(optional)}")
    lines = list(project["dependencies"]) + [line for extra in extras for line in optional[extra]]
    return [Requirement(line) for line in lines]


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def missing(requirements: list[Requirement], version_of=installed_version) -> list[str]:
    """'name (needs SPEC, found VERSION)' for each requirement the interpreter does not meet."""
    problems = []
    for req in requirements:
        found = version_of(req.name)
        if found is None:
            problems.append(f"{req.name} (needs {req.specifier or 'any version'}, not installed)")
        elif not req.specifier.contains(found, prereleases=True):
            problems.append(f"{req.name} (needs {req.specifier}, found {found})")
    return problems


def main(argv: list[str] | None = None) -> int:
    extras = sys.argv[1:] if argv is None else argv
    problems = missing(declared(extras))
    if not problems:
        print(f"{sys.executable} has every requirement{' of ' + ', '.join(extras) if extras else ''}")
        return 0
    print(f"{sys.executable} lacks: " + "; ".join(problems))
    return 1


if __name__ == "__main__":
    sys.exit(main())
