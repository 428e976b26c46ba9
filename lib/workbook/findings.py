"""Computed findings: plain-text tables and verdicts derived from numbers, so a notebook's prose never states
what its run did not show. Each verdict says when there are too few points to conclude anything.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from ..common import paths


def format_table(rows: list[dict], columns: dict[str, str], smoke: bool | None = None) -> str:
    """A plain-text table: columns maps a row key to its format spec (e.g. {"beta": "g", "bpd_k": ".3f"}); in smoke
    mode (smoke=None reads $WORKBOOK_SMOKE) a last line says the numbers check the code only."""
    cells = [[format(row[key], spec) for key, spec in columns.items()] for row in rows]
    widths = [max(len(key), *(len(r[i]) for r in cells)) for i, key in enumerate(columns)]
    lines = ["  ".join(key.rjust(w) for key, w in zip(columns, widths))]
    note = [smoke_line(smoke)] if smoke_line(smoke) else []
    return "\n".join(lines + ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells] + note)


def paired_gap(before: Sequence[float], after: Sequence[float]) -> tuple[float, float]:
    """Mean of before_i - after_i over the same images and its standard error (the paired comparison: the
    images' shared difficulty cancels, so it is far smaller than either mean's own standard error)."""
    if len(before) != len(after) or len(before) < 2:
        raise ValueError(
            f"a paired comparison needs two equal lists of >= 2 values, got {len(before)} and {len(after)}"
        )
    diff = [a - b for a, b in zip(before, after)]
    return statistics.fmean(diff), statistics.stdev(diff) / len(diff) ** 0.5


def counted(n: float, noun: str, spec: str = ",") -> str:
    """'1 step', '16 steps', '0.06 epochs', '1 epoch': n formatted by spec, the noun singular only when the number
    reads exactly '1' (so '1.00 epochs' stays plural, as a measured amount)."""
    text = format(n, spec)
    return f"{text} {noun}{'' if text == '1' else 's'}"


SMOKE_NOTE = "SMOKE RUN: reduced sizes and budgets; these numbers check the code, not the science"


def smoke_line(smoke: bool | None = None) -> str:
    """The line every smoke table and finding carries ('' outside smoke mode)."""
    return f"[{SMOKE_NOTE}]" if (paths.is_smoke() if smoke is None else smoke) else ""


def overridden_parameters(pairs: dict[str, tuple], profile: str = "smoke") -> str:
    """For a notebook's settings: pairs maps a parameter name to (the value given, the value used); the note names
    every parameter that was set (not None) and replaced, e.g. 'smoke profile: MAX_MINUTES = 30 replaced by 0
    (the smoke sizes win; use the full profile to apply them)', or '' when none was."""
    replaced = [
        f"{name} = {given!r} replaced by {'the default (None)' if used is None else repr(used)}"
        for name, (given, used) in pairs.items()
        if given is not None and given != used
    ]
    if not replaced:
        return ""
    remedy = (
        "use the short or full profile to apply them" if profile == "smoke" else "they do not apply in it"
    )
    return f"{profile} profile: {'; '.join(replaced)} (the {profile} sizes win; {remedy})"
