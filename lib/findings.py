"""Computed findings: plain-text tables and verdicts derived from numbers, so a notebook's prose never states
what its run did not show. Each verdict says when there are too few points to conclude anything.
"""
from __future__ import annotations

from collections.abc import Sequence


def format_table(rows: list[dict], columns: dict[str, str]) -> str:
    """A plain-text table: columns maps a row key to its format spec (e.g. {"beta": "g", "bpd_k": ".3f"})."""
    cells = [[format(row[key], spec) for key, spec in columns.items()] for row in rows]
    widths = [max(len(key), *(len(r[i]) for r in cells)) for i, key in enumerate(columns)]
    lines = ["  ".join(key.rjust(w) for key, w in zip(columns, widths))]
    return "\n".join(lines + ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells])


def trend_verdict(ks: Sequence[int], values: Sequence[float]) -> str:
    """Whether values (ordered by k) rise with k: 'holds', 'holds only weakly' (ties) or 'does not hold', with where."""
    if len(values) < 2:
        return "cannot be checked with one k"
    pairs = list(zip(ks, ks[1:], values, values[1:]))
    falls = [f"k={a} -> {b}" for a, b, before, after in pairs if after < before]
    ties = [f"k={a} -> {b}" for a, b, before, after in pairs if after == before]
    if falls:
        return f"does not hold (falls from {', '.join(falls)})"
    return f"holds only weakly (no change from {', '.join(ties)})" if ties else "holds (rises at every larger k)"


def iwae_k_claims(rows: list[dict], k_eval: int) -> str:
    """Burda et al.'s two claims checked on IWAE rows (keys k, log_px_k, train_bound, n_active), ordered by k:
    (a) a tighter bound with larger k (the test L_{k_eval} and the last logged training L_k rise with k) and
    (b) more active units with larger k. One sentence of verdicts computed from the numbers."""
    rows = sorted(rows, key=lambda r: r["k"])
    ks = [r["k"] for r in rows]

    def claim(key: str, spec: str, unit: str = "") -> str:
        values = [r[key] for r in rows]
        return " -> ".join(format(v, spec) for v in values) + f"{unit}: {trend_verdict(ks, values)}"

    return (f"IWAE k = {ks}: (a) tighter bound with larger k: test L_{k_eval} {claim('log_px_k', '.1f', ' nats')}; "
            f"training bound L_k {claim('train_bound', '.1f', ' nats')}; (b) more active units with larger k: "
            f"{claim('n_active', 'd')}.")
