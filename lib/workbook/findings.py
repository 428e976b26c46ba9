"""Computed findings: plain-text tables and verdicts derived from numbers, so a notebook's prose never states
what its run did not show. Each verdict says when there are too few points to conclude anything.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from ..common import paths


def format_table(rows: list[dict], columns: dict[str, str], smoke: bool | None = None) -> str:
    """A plain-text table: columns maps a row key to its format spec (e.g. {"beta": "g", "bpd_k": ".3f"}); in smoke
    mode (smoke=None reads $WORKBOOK_SMOKE) a last line says the numbers check the code only."""
    cells = [[format(row[key], spec) for key, spec in columns.items()] for row in rows]
    widths = [max(len(key), *(len(r[i]) for r in cells)) for i, key in enumerate(columns)]
    lines = ["  ".join(key.rjust(w) for key, w in zip(columns, widths))]
    note = [smoke_line(smoke)] if smoke_line(smoke) else []
    return "\n".join(lines + ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells] + note)


def trend_verdict(ks: Sequence[int], values: Sequence[float]) -> str:
    """Whether values (ordered by k) rise with k: 'holds', 'holds only weakly' (ties) or 'does not hold', with where."""
    if len(values) < 2:
        return "cannot be checked with one k"
    pairs = list(zip(ks, ks[1:], values, values[1:]))
    falls = [f"k={a} -> {b}" for a, b, before, after in pairs if after < before]
    ties = [f"k={a} -> {b}" for a, b, before, after in pairs if after == before]
    if falls:
        return f"does not hold (falls from {', '.join(falls)})"
    if len(ties) == len(pairs):
        return "does not hold (no change at any k)"
    return (
        f"holds only weakly (no change from {', '.join(ties)})" if ties else "holds (rises at every larger k)"
    )


def iwae_k_claims(rows: list[dict], k_eval: int) -> str:
    """Burda et al.'s two claims checked on IWAE rows (keys k, log_px_k, train_bound, n_active), ordered by k:
    (a) a tighter bound with larger k (the test L_{k_eval} and the last logged training L_k rise with k) and
    (b) more active units with larger k. One sentence of verdicts computed from the numbers; when every row has
    its per-image test bits/dim (`bpd_k_per_image`, the same images), each step in k says whether its change is
    beyond twice the paired standard error, i.e. whether these images can tell the two bounds apart."""
    rows = sorted(rows, key=lambda r: r["k"])
    ks = [r["k"] for r in rows]

    def claim(key: str, spec: str, unit: str = "") -> str:
        values = [r[key] for r in rows]
        return " -> ".join(format(v, spec) for v in values) + f"{unit}: {trend_verdict(ks, values)}"

    paired = ""
    if len(rows) > 1 and all(len(r.get("bpd_k_per_image") or ()) > 1 for r in rows):
        steps = []
        for a, b in zip(rows, rows[1:]):
            gap, se = paired_gap(a["bpd_k_per_image"], b["bpd_k_per_image"])
            steps.append(
                f"k={a['k']} -> {b['k']} {gap:+.4f} ± {se:.4f} ({'beyond' if abs(gap) > 2 * se else 'within'})"
            )
        paired = (
            f" [per test image, bits/dim gained, against twice the paired standard error: {'; '.join(steps)}]"
        )
    return (
        f"IWAE k = {ks}: (a) tighter bound with larger k: test L_{k_eval} {claim('log_px_k', '.1f', ' nats')}{paired}; "
        f"training bound L_k {claim('train_bound', '.1f', ' nats')}; (b) more active units with larger k: "
        f"{claim('n_active', 'd')}."
    )


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


def steps_verdict(values: Sequence[float], tol: float = 0.0) -> str:
    """How `values` (already ordered by the setting) move step by step: 'rises at every step', 'falls at every
    step', 'does not change', or 'mixed (rises at i of n steps, falls at j)'; one value: 'cannot be judged'.
    Changes within `tol` (absolute) count as no change."""
    if len(values) < 2:
        return f"cannot be judged from {len(values)} point{'s' * (len(values) != 1)}"
    diffs = [b - a for a, b in zip(values, values[1:])]
    ups, downs = sum(d > tol for d in diffs), sum(d < -tol for d in diffs)
    n = len(diffs)
    if ups == n:
        return "rises at every step"
    if downs == n:
        return "falls at every step"
    if ups == downs == 0:
        return "does not change"
    return f"is mixed (rises at {ups} of {n} steps, falls at {downs})"


def trend_sentence(
    name: str, setting: str, xs: Sequence[float], values: Sequence[float], spec: str = ".1f", unit: str = ""
) -> str:
    """'<name> rises at every step as <setting> grows (x=a: v -> x=b: w)', or that one point cannot show a trend."""
    pairs = sorted(zip(xs, values))
    listed = " -> ".join(f"{format(v, spec)}" for _, v in pairs) + (f" {unit}" if unit else "")
    settings = ", ".join(f"{x:g}" for x, _ in pairs)
    if len(pairs) < 2:
        return (
            f"{name} is {listed} at {setting} = {settings}; with one {setting} nothing can be concluded about "
            f"how it changes with {setting}"
        )
    return (
        f"{name} {steps_verdict([v for _, v in pairs])} as {setting} grows ({setting} = {settings}: {listed})"
    )


def rate_distortion_verdict(rates: Sequence[float], distortions: Sequence[float]) -> str:
    """Whether the points trace a trade-off: ordered by rate, distortion should fall. Needs >= 2 points."""
    pairs = sorted(zip(rates, distortions))
    if len(pairs) < 2:
        return "one point cannot show a rate-distortion trade-off: nothing can be concluded"
    verdict = steps_verdict([d for _, d in pairs])
    shape = {
        "falls at every step": "a trade-off: more rate buys less distortion at every step",
        "rises at every step": "NOT a trade-off: distortion rises with the rate at every step",
    }
    return (
        f"ordered by rate, the distortion {verdict} ({shape.get(verdict, 'no consistent trade-off')}; "
        f"rate {pairs[0][0]:.1f} -> {pairs[-1][0]:.1f} nats, distortion {pairs[0][1]:.1f} -> {pairs[-1][1]:.1f} nats)"
    )


def budget_spread(rows: list[dict], n_train: int, batch_size: int) -> str:
    """Steps and epochs per model (rows with keys model, steps) and a warning when an equal-time budget gave the
    models very different amounts of training (a busy machine, or slower larger-k steps)."""
    epochs = {r["model"]: r["steps"] * batch_size / max(n_train, 1) for r in rows}
    listed = "; ".join(
        f"{r['model']}: {counted(r['steps'], 'step')} = {counted(epochs[r['model']], 'epoch', '.2f')}"
        for r in rows
    )
    steps = [r["steps"] for r in rows]
    if not steps or min(steps) <= 0:
        return listed + ". WARNING: a model trained no step at all; nothing can be compared"
    ratio = max(steps) / min(steps)
    if ratio > 1.5:
        return (
            f"{listed}. WARNING: the step counts differ {ratio:.1f}x, so this view compares models trained on "
            "very different amounts of data (larger k costs more per step, and a busy machine skews the clock)"
        )
    return f"{listed} (step counts within {ratio:.2f}x of each other)"


def equal_epochs_note(rows: list[dict], planned_steps: int, epochs: float, max_minutes: float) -> str:
    """Whether every model of an equal-epochs view (rows with keys model, steps) ran the planned steps: a time cap
    (max_minutes) can stop a larger-k model early, and a run loaded from an older plan may be past it; then the
    epochs were not equal and the note says so."""
    off_plan = [
        f"{r['model']} stopped early at step {r['steps']:,}"
        if r["steps"] < planned_steps
        else f"{r['model']} was loaded at step {r['steps']:,}, past the plan"
        for r in rows
        if r["steps"] != planned_steps
    ]
    if not off_plan:
        return (
            f"every model ran the planned {counted(planned_steps, 'step')} ({counted(epochs, 'epoch', 'g')})"
        )
    return (
        f"the epochs were NOT equal ({'; '.join(off_plan)}; {counted(planned_steps, 'step')} planned, MAX_MINUTES = "
        f"{max_minutes:g}; run again to resume), so the k comparison below is not at equal epochs"
    )


def same_k_check(rows: list[dict]) -> str:
    """At each k trained under both objectives (rows with keys model 'VAE k=..' / 'IWAE k=..', k, bpd_k), how far
    apart their test bits/dim are: at k = 1 the two objectives are the same, so a gap there is training noise."""
    vae = {r["k"]: r["bpd_k"] for r in rows if r["model"].startswith("VAE")}
    both = sorted((r for r in rows if r["model"].startswith("IWAE") and r["k"] in vae), key=lambda r: r["k"])
    if not both:
        return "Check: no k was trained under both the VAE and the IWAE objective."
    gaps = ", ".join(f"(k={r['k']}) differ by {abs(vae[r['k']] - r['bpd_k']):.4f} bits/dim" for r in both)
    return f"Check: at equal k the VAE and IWAE objectives {gaps} (at k = 1 they are the same objective)."


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


def best_likelihood(rows: list[dict], name: Callable[[dict], str], k: int) -> str:
    """Which row has the lowest L_k bits/dim (rows of lib.metrics.evaluate_vae, evaluated on the same test
    images), with its standard error, and whether the runner-up is behind by more than twice the paired standard
    error of the difference (the same images, so the per-image differences decide): a ranking the evaluation can
    support, or says it cannot."""
    ranked = sorted(rows, key=lambda r: r["bpd_k"])
    best = ranked[0]
    text = f"the best test likelihood is at {name(best)} ({best['bpd_k']:.4f} ± {best['bpd_k_se']:.4f} bits/dim by "
    text += f"L_{k} on {len(best['bpd_k_per_image'])} test images)"
    if len(ranked) == 1:
        return text + ": nothing to compare it with"
    second = ranked[1]
    gap, paired = paired_gap(second["bpd_k_per_image"], best["bpd_k_per_image"])
    verdict = "beyond" if gap > 2 * paired else "within"
    text += (
        f"; the next, {name(second)}, is {gap:.4f} bits/dim behind, {verdict} twice its paired standard error"
    )
    return text + f" ({paired:.4f})" + ("" if verdict == "beyond" else ": these images cannot rank the two")
