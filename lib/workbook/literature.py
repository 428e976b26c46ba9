"""Notebook 01's tables: the published CIFAR-10 figures of the papers behind each experiment (as data, with where
each number is stated and how it was checked), and the workbook's own measured numbers and FID calibration read
from the results files, never typed in.

The papers: NCSN (Song & Ermon 2019), NCSNv2 (Song & Ermon 2020), beta-VAE (Higgins et al. 2017), IWAE (Burda et
al. 2016), IAF-VAE (Kingma et al. 2016), BIVA (Maaloe et al. 2019), NVAE (Vahdat & Kautz 2020), VDVAE (Child 2021),
PixelCNN++ (Salimans et al. 2017), PixelSNAIL (Chen et al. 2018), AASAE (Falcon et al. 2021).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from . import results

# Published CIFAR-10 figures (original pixels). None: the paper reports no such figure. `source` names where the
# number is stated; `checked` how it was verified. A bits/dim string ("≤ 3.11") is an upper bound as published.
PUBLISHED = [
    dict(
        paper="NCSN (Song & Ermon 2019)",
        family="ncsn",
        bpd=None,
        IS=8.87,
        FID=25.32,
        source="abstract (IS 8.87); CIFAR-10 sample-quality table, Table 1 (IS, FID)",
        checked="abstract; Papers with Code results of the paper",
    ),
    dict(
        paper="NCSNv2 (Song & Ermon 2020)",
        family="ncsn",
        bpd=None,
        IS=8.40,
        FID=10.87,
        source="arXiv:2006.09011, Table 1: NCSNv2 with the final denoising step, unconditional CIFAR-10",
        checked="FID 10.87 in Table 1 as cited by an independent re-implementation (METU CENG 796); IS not re-checked",
    ),
    dict(
        paper="β-VAE (Higgins et al. 2017)",
        family="beta_vae",
        bpd=None,
        IS=None,
        FID=None,
        source="no CIFAR-10 experiments",
        checked="paper's datasets: dSprites, 3D chairs, 3D faces, CelebA",
    ),
    dict(
        paper="IWAE (Burda et al. 2016)",
        family="iwae",
        bpd=None,
        IS=None,
        FID=None,
        source="arXiv:1509.00519; no CIFAR-10 experiments",
        checked="paper's datasets: MNIST, Omniglot",
    ),
    dict(
        paper="IAF-VAE (Kingma et al. 2016)",
        family="nvae",
        bpd="≤ 3.11",
        IS=None,
        FID=None,
        source="arXiv:1606.04934, CIFAR-10 log-likelihood table",
        checked="Papers with Code lists 3.1 (rounded)",
    ),
    dict(
        paper="BIVA (Maaløe et al. 2019)",
        family="nvae",
        bpd="≤ 3.08",
        IS=None,
        FID=None,
        source="arXiv:1902.02102, CIFAR-10 log-likelihood table",
        checked="Papers with Code results of the paper",
    ),
    dict(
        paper="NVAE (Vahdat & Kautz 2020)",
        family="nvae",
        bpd="≤ 2.91",
        IS=None,
        FID=None,
        source="abstract and CIFAR-10 table (bits/dim); no CIFAR-10 FID confirmed from the paper",
        checked="abstract (2.98 -> 2.91 bits/dim); CIFAR-10 FIDs quoted for NVAE elsewhere (51.71, 32.53 'w/ flow' "
        "on Papers with Code) could not be traced to the paper's text, so none is listed",
    ),
    dict(
        paper="VDVAE (Child 2021)",
        family="nvae",
        bpd="≤ 2.87",
        IS=None,
        FID=None,
        source="CIFAR-10 log-likelihood table",
        checked="Papers with Code results of the paper",
    ),
    dict(
        paper="PixelCNN++ (Salimans et al. 2017)",
        family="autoregressive",
        bpd=2.92,
        IS=None,
        FID=None,
        source="CIFAR-10 log-likelihood table",
        checked="Papers with Code results of the paper",
    ),
    dict(
        paper="PixelSNAIL (Chen et al. 2018)",
        family="autoregressive",
        bpd=2.85,
        IS=None,
        FID=None,
        source="abstract",
        checked="abstract",
    ),
    dict(
        paper="AASAE (Falcon et al. 2021)",
        family="beta_vae",
        bpd=None,
        IS=None,
        FID=None,
        source="evaluated by linear-probe accuracy, no generative figures",
        checked="abstract",
    ),
]
FIGURES = ("bpd", "IS", "FID")
METRIC_PATTERN = re.compile(
    r"bpd|bits|fd_c10|frechet|fid|inception|precision|recall", re.I
)  # what is compared


def cell(value) -> str:
    """A table cell: '–' for no figure, floats as published to two decimals (8.40, not 8.4)."""
    return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def published_table(published: list[dict] = PUBLISHED) -> str:
    """The published figures as a Markdown table, with what they were measured on."""
    rows = ["| paper | test bits/dim | IS | FID | stated in | checked against |", "|---|---|---|---|---|---|"]
    rows += [
        f"| {p['paper']} | {cell(p['bpd'])} | {cell(p['IS'])} | {cell(p['FID'])} | {p['source']} | {p['checked']} |"
        for p in published
    ]
    return "\n".join(rows) + (
        "\n\nAll on the original CIFAR-10 pixels; bits/dim of VAEs are upper bounds on −log p(x) (ELBO or "
        "importance-weighted estimates); IS/FID use Inception-v3 features of samples, as each paper computes them."
    )


def bpd_value(bpd) -> float:
    """A published bits/dim as a number: 2.92, or the bound in '≤ 3.11'."""
    return float(str(bpd).lstrip("≤ "))


def published_finding(published: list[dict] = PUBLISHED) -> str:
    """How many papers report bits/dim (and the best), which list an FID, and how many report no figure."""
    with_bpd = [(bpd_value(p["bpd"]), p["paper"]) for p in published if p["bpd"] is not None]
    with_fid = [(p["FID"], p["paper"]) for p in published if isinstance(p["FID"], (int, float))]
    none = sum(all(p[k] is None for k in FIGURES) for p in published)
    best = f", best {min(with_bpd)[0]:.2f} ({min(with_bpd)[1]})" if with_bpd else ""
    return (
        f"Finding: {len(with_bpd)} of the {len(published)} papers report CIFAR-10 bits/dim{best}; {len(with_fid)} "
        f"list a CIFAR-10 FID ({', '.join(f'{v} {n}' for v, n in with_fid)}); {none} report no CIFAR-10 figure "
        "at all."
    )


def results_folders(results_dir, include_smoke: bool) -> list[tuple[Path, bool]]:
    """[(folder, is_smoke)]: the committed results (or `results_dir`), and the smoke results when asked for."""
    real = results.results_path("any", smoke=False).parent if results_dir is None else Path(results_dir)
    smoke = [(results.results_path("any", smoke=True).parent, True)] if include_smoke else []
    return [(real, False)] + smoke


def read_records(folders: list[tuple[Path, bool]]) -> list[tuple[dict, bool]]:
    """[(results record, is_smoke)] of every results file in the folders."""
    return [(record, is_smoke) for folder, is_smoke in folders for record in results.load_records(folder)[0]]


def published_for(family: str | None, published: list[dict] = PUBLISHED) -> str:
    """The published figures of a model family, '; '-joined ('–' when none)."""
    listed = [
        f"{p['paper']}: " + ", ".join(f"{k} {p[k]}" for k in FIGURES if p[k] is not None)
        for p in published
        if p["family"] == family and any(p[k] is not None for k in FIGURES)
    ]
    return "; ".join(listed) or "–"


def _copy_and_compute(record: dict) -> tuple[str, str]:
    data = record.get("data", {})
    lossy = " (lossy JPEG q75: not comparable)" if data.get("lossy") else ""
    copy = f"{data.get('source', '?')} {data.get('format', '?')}{lossy}"
    compute = (
        f"{record.get('device', '?')}, {record.get('wall_minutes', math.nan):.1f} min, "
        f"{record.get('steps', '?'):,} steps, {record.get('img_per_s', math.nan):,.0f} img/s"
    )
    return copy, compute


def measured_rows(records: list[tuple[dict, bool]]) -> list[str]:
    """One Markdown row per measured likelihood or distance metric of every record: experiment, profile,
    metric, value, data copy, compute and the family's published figures (for orientation only)."""
    rows = []
    for record, is_smoke in records:
        copy, compute = _copy_and_compute(record)
        for name, value in record["metrics"].items():
            if (
                METRIC_PATTERN.search(name)
                and isinstance(value, (int, float))
                and not isinstance(value, bool)
            ):
                rows.append(
                    f"| {record['experiment']} | {'smoke' if is_smoke else 'full'} | {name} | {value:.4g} | "
                    f"{copy} | {compute} | {published_for(record.get('model'))} |"
                )
    return rows


MEASURED_HEADER = (
    "| experiment | profile | metric | value | data copy | compute | published (original pixels) |\n"
    "|---|---|---|---|---|---|---|"
)


def measured_finding(records: list[tuple[dict, bool]], n_rows: int) -> str:
    """How many real and smoke results files gave how many comparable rows (measured_table's, one per family and
    profile, or measured_rows'), and on which data copy."""
    real = [r for r, smoke in records if not smoke]
    families = sorted({r.get("model", "?") for r in real})
    lossy = any(r.get("data", {}).get("lossy") for r, _ in records)
    return (
        f"Finding: {len(real)} real results file(s) ({', '.join(families) or 'none yet'}) and "
        f"{len(records) - len(real)} smoke file(s) give {n_rows} comparable row(s); every workbook number "
        f"above is on the {'lossy JPEG copy' if lossy else 'data copy named in its row'}, so it ranks models "
        "within the workbook rather than against the published column."
    )


def load_calibration() -> tuple[dict | None, Path]:
    """(the committed FID calibration, or None when it is missing; its path)."""
    path = results.results_path("fid_calibration", smoke=False)
    return (json.loads(path.read_text()) if path.is_file() else None), path


def calibration_table(cal: dict) -> str:
    """The FID calibration's comparisons as a Markdown table, with its note, network and machine."""
    rows = ["| comparison | images | n vs n_reference | FID | KID ± std |", "|---|---|---|---|---|"]
    for r in cal["comparisons"]:
        whole = " (whole sets: one subset)" if r["kid_subset_size"] == r["n"] == r["n_reference"] else ""
        rows.append(
            f"| {r['comparison']} | {r['what']} | {r['n']:,} vs {r['n_reference']:,} | {r['fid']:.2f} | "
            f"{r['kid']:.4f} ± {r['kid_std']:.4f}{whole} |"
        )
    return "\n".join(rows) + (
        f"\n\n{cal['note']} Network: {cal['network']}. Measured on {cal['machine']} (torch {cal['torch']}) in "
        f"{cal['wall_seconds'] / 60:.0f} min. {cal.get('run_note', '')}"
    )


def published_fids(published: list[dict] = PUBLISHED) -> str:
    """'NCSN 25.32, NCSNv2 10.87': each paper that lists a CIFAR-10 FID, by its short name."""
    return ", ".join(
        f"{p['paper'].split(' (')[0]} {cell(p['FID'])}" for p in published if p["FID"] is not None
    )


def calibration_findings(cal: dict) -> list[str]:
    """The calibration's findings: the anchor against the original batches (when the file has one), what a
    second JPEG pass does (when measured), and the range of real-vs-real FIDs against the papers' setting."""
    copy = "the JPEG copy" if cal.get("lossy") else "this copy"
    rows = cal["comparisons"]
    lines = []
    pub, anchor = cal.get("published"), next((r for r in rows if "published_original" in r), None)
    if pub and anchor:
        lines.append(
            f"Finding: test vs train at n = {anchor['n']:,} vs {anchor['n_reference']:,}: FID {anchor['fid']:.2f} "
            f"on {copy}, {pub['fid']:.2f} on the original batches (torch-fidelity's test suite), a difference of "
            f"{anchor['fid'] - pub['fid']:+.2f}; KID {anchor['kid']:.5f} vs {pub['kid']:.5f}, precision "
            f"{anchor['precision']:.3f} vs {pub['precision']:.3f}, recall {anchor['recall']:.3f} vs "
            f"{pub['recall']:.3f}."
        )
    base = next((r for r in rows if r.get("degradation") == "none"), None)
    again = next((r for r in rows if r.get("degradation") == "jpeg"), None)
    if base and again:
        lines.append(
            f"Finding: compressing the test images once more at JPEG quality {again['quality']} moves their FID "
            f"against the training images from {base['fid']:.2f} to {again['fid']:.2f} (n = {base['n']:,} vs "
            f"{base['n_reference']:,})."
        )
    real = [r for r in rows if r["comparison"].startswith(("test vs train", "test halves"))]
    if real:
        low, high = min(real, key=lambda r: r["fid"]), max(real, key=lambda r: r["fid"])
        lines.append(
            f"Finding: real test images score FID {low['fid']:.1f} (n = {low['n']:,} vs {low['n_reference']:,}) to "
            f"{high['fid']:.1f} (n = {high['n']:,} vs {high['n_reference']:,}) against real images of this copy, "
            f"so a workbook FID is read against the floor at its own n; the papers' FIDs ({published_fids()}) use "
            "50,000 samples of the original pixels and models trained for days, so they are not comparable with "
            f"FIDs measured here on {copy} at a few thousand samples."
        )
    return lines


def _profile(record: dict, is_smoke: bool) -> str:
    return "smoke" if is_smoke else str(record.get("profile") or "full")


def measured_table(records: list[tuple[dict, bool]]) -> str:
    """The workbook's own numbers as one compact Markdown table: one row per model family and profile (not one
    per metric of every run), with how many runs it has, the best test bits/dim (the tightest bound,
    results.tightest_test_bound) and the best fd_c10 among them with the run that reached it, the data copies,
    the summed compute and the family's published figures (for orientation only). '' when no record holds a
    bits/dim or a distance; every run's own numbers stay in its results file."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for record, is_smoke in records:
        groups.setdefault((record.get("model", "?"), _profile(record, is_smoke)), []).append(record)
    rows = []
    for (family, profile), runs in groups.items():
        bounds = [(*results.tightest_test_bound(r.get("metrics", {})), r["experiment"]) for r in runs]
        bounds = [b for b in bounds if b[0] is not None]
        fds = [
            (r["metrics"]["fd_c10"], r["experiment"])
            for r in runs
            if isinstance(r.get("metrics", {}).get("fd_c10"), (int, float))
        ]
        if not bounds and not fds:
            continue
        best_bpd = min(bounds) if bounds else None
        best_fd = min(fds) if fds else None
        copies = sorted({_copy_and_compute(r)[0] for r in runs})
        minutes = sum(r.get("wall_minutes") or 0.0 for r in runs)
        devices = ", ".join(sorted({str(r.get("device", "?")) for r in runs}))
        rows.append(
            f"| {results.FAMILIES.get(family, family)} | {profile} | {len(runs)} | "
            + (f"{best_bpd[0]:.3f} ({best_bpd[1]}, {best_bpd[2]})" if best_bpd else "–")
            + " | "
            + (f"{best_fd[0]:.3f} ({best_fd[1]})" if best_fd else "–")
            + f" | {'; '.join(copies)} | {minutes:.1f} min on {devices} | {published_for(family)} |"
        )
    if not rows:
        return ""
    header = (
        "| family | profile | runs | best test bits/dim (bound, run) | best fd_c10 (run) | data copy | "
        "training compute (all runs) | published (original pixels) |\n|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([header, *rows]) + (
        "\n\nOne row per family and profile: the best of its runs. Every run's metrics are in its results file."
    )
