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


PAIRED = "paired over the same test images"  # the kinds of standard error a verdict names
SEEDS = "over training seeds"


def over_seeds(values: Sequence[float]) -> tuple[float, float]:
    """Mean over seeded training runs and its standard error (nan with one seed: training noise unmeasured)."""
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return statistics.fmean(values), se


def seed_gap(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """mean(a) - mean(b) over two settings' seeded runs, SE sqrt(s_a^2/n_a + s_b^2/n_b) (nan: one seed)."""
    if not a or not b:
        raise ValueError("a seed comparison needs at least one run of each setting")
    (mean_a, se_a), (mean_b, se_b) = over_seeds(a), over_seeds(b)
    return mean_a - mean_b, (se_a**2 + se_b**2) ** 0.5


def stated(name: str, effect: float, se: float, kind: str, unit: str = "bits/dim", spec: str = ".4f") -> str:
    """One way to state a difference: '<name>: +0.0039 ± 0.0005 bits/dim (SE <kind>), decided (7.8 SE)', decided
    only beyond 2 SE; within them 'undecided'; without a standard error (nan: one seed) 'not decidable'."""
    text = f"{name}: {effect:+{spec}} ± {se:{spec}} {unit} (SE {kind})".replace("  ", " ")
    if se != se:  # nan
        return f"{name}: {effect:+{spec}} {unit}, SE {kind} unmeasured (one run each): not decidable"
    ratio = abs(effect) / se if se > 0 else float("inf") if effect else 0.0  # 0 ± 0: no difference to decide
    return f"{text}, {'decided' if ratio > 2 else 'undecided'} ({ratio:.1f} SE)"


def counted(n: float, noun: str, spec: str = ",") -> str:
    """'1 step', '16 steps', '0.06 epochs', '1 epoch': n formatted by spec, the noun singular only when the number
    reads exactly '1' (so '1.00 epochs' stays plural, as a measured amount)."""
    text = format(n, spec)
    return f"{text} {noun}{'' if text == '1' else 's'}"


SMOKE_NOTE = "SMOKE RUN: reduced sizes and budgets; these numbers check the code, not the science"


def smoke_line(smoke: bool | None = None) -> str:
    """The line every smoke table and finding carries ('' outside smoke mode)."""
    return f"[{SMOKE_NOTE}]" if (paths.is_smoke() if smoke is None else smoke) else ""
