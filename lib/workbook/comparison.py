"""Notebook 06's measurements around the models: fd_c10 calibrated on real images (the floor, degradations, the
spread over sample counts), every model's bank measured against the floor at its own n, FID/KID with the
committed real-data floor, and where the runs are tracked (Weights & Biases).

fd_c10 is the Fréchet distance (Heusel et al. 2017) in the features of the workbook's own CIFAR-10 classifier;
FID uses the TF FID Inception-v3 pool3 features (lib.metrics.inception). Both are biased upwards at small n, so
a model is read against real images measured at the same n.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import metrics
from ..data import degrade
from ..metrics import fid_calibration
from ..models import reestimate_bn
from ..train.logger import wandb_logged_in
from . import findings, results

DEGRADATIONS = {  # family -> levels, weakest first: noise std ([0, 1] scale), blur std (pixels), JPEG quality
    "noise σ": (0.02, 0.05, 0.1, 0.2),
    "blur σ (px)": (0.5, 1.0, 2.0),
    "JPEG quality": (50, 20, 5),
}
N_FID_PAPERS = 50_000  # papers' FID: 50k samples against the 50k training images


def fd_meter(classifier, cifar, S, device) -> Callable:
    """fd_c10(images, **options) against the training split with this notebook's classifier, reference size
    (S.n_reference) and profile: one measurement rule for every number of the notebook."""
    return functools.partial(
        metrics.fd_c10,
        reference="train",
        classifier=classifier,
        cifar=cifar,
        n_reference=S.n_reference,
        device=device,
        smoke=S.smoke,
    )


def bank_fd_c10(bank, n: int, cifar, device, smoke: bool):
    """fd_c10 of the first n images of a model's bank (notebook 02), or None with the reason printed: n = 0
    (the profile measures none) or no classifier stored yet (the runner, `python -m lib.workbook`, trains it
    before the first notebook that measures fd_c10; so do notebook 06 and `python -m lib.metrics train-classifier`)."""
    if n <= 0:
        print("fd_c10: not measured in this profile (n_fid = 0)")
        return None
    try:
        classifier = metrics.load_classifier(smoke, device=device)
    except FileNotFoundError as missing:
        print(
            f"fd_c10: not measured, no classifier stored yet ({missing}; the runner, python -m lib.workbook, "
            "trains it before this notebook)"
        )
        return None
    measured = metrics.fd_c10(bank[:n], reference="train", classifier=classifier, cifar=cifar, smoke=smoke)
    print(measured)  # names the data copy it was measured on
    return measured


def degraded(images: np.ndarray, seed: int, levels: dict = DEGRADATIONS) -> dict[str, list[tuple]]:
    """family -> [(level, the images degraded at that level)] for the three families of `levels`."""
    make = {
        "noise σ": lambda s: degrade.add_noise(images, s, seed=seed),
        "blur σ (px)": lambda s: degrade.gaussian_blur(images, s),
        "JPEG quality": lambda q: degrade.jpeg(images, q),
    }
    return {family: [(level, make[family](level)) for level in values] for family, values in levels.items()}


def calibrate(degradations: dict[str, list[tuple]], fd: Callable) -> dict[str, list[tuple]]:
    """family -> [(level, fd(images))]: the distance of every degraded set."""
    return {family: [(level, fd(x)) for level, x in levels] for family, levels in degradations.items()}


def calibration_table(floor, calibration: dict, n: int, accuracy: float, lossy: bool, smoke: bool) -> str:
    """The calibration as a Markdown table: the floor, then each degradation's fd_c10, its ratio to the floor,
    precision and recall; with the smoke line in smoke mode and the data-copy caveat on a lossy copy."""
    rows = [
        "| degradation | level | fd_c10 | × floor | precision | recall |",
        "|---|---|---|---|---|---|",
        f"| none (floor) | – | {floor.fd:.3f} | 1.0 | {floor.precision:.3f} | {floor.recall:.3f} |",
    ]
    for family, measured in calibration.items():
        rows += [
            f"| {family} | {level} | {r.fd:.3f} | {r.fd / floor.fd:.1f} | {r.precision:.3f} | {r.recall:.3f} |"
            for level, r in measured
        ]
    banner = f"**{findings.smoke_line(smoke)}**\n\n" if smoke else ""
    caveat = " Data: JPEG q75 copy, comparable only within this workbook." if lossy else ""
    return (
        banner + "\n".join(rows) + f"\n\nEvery row at n = {n:,} test images, the floor's n. "
        f"Classifier test accuracy {accuracy:.1%}.{caveat}"
    )


def monotone_finding(calibration: dict, floor_fd: float) -> str:
    """Whether fd_c10 grows with every step of each degradation, and where the strongest level lands."""
    monotone = {f: all(b.fd > a.fd for (_, a), (_, b) in zip(res, res[1:])) for f, res in calibration.items()}
    strongest = ", ".join(f"{res[-1][1].fd / floor_fd:.1f}x ({f})" for f, res in calibration.items())
    grows = ", ".join(f for f, m in monotone.items() if m) or "no family"
    not_for = [f for f, m in monotone.items() if not m]
    return (
        f"Finding: fd_c10 grows monotonically with the degradation strength for {grows}"
        + (f" (not for {', '.join(not_for)})" if not_for else "")
        + f"; the strongest level of each lands at {strongest} the floor."
    )


def spread(x_test: np.ndarray, ns, repeats: int, seed: int, fd: Callable) -> dict[int, np.ndarray]:
    """n -> fd_c10 of `repeats` random test subsets of size n (subset r drawn with seed + 1 + r), without
    precision/recall: how much the distance depends on n, and how much it varies between subsets."""
    out = {}
    for n in ns:
        orders = [np.random.default_rng(seed + 1 + r).permutation(len(x_test))[:n] for r in range(repeats)]
        out[n] = np.array([fd(x_test[order], with_pr=False).fd for order in orders])
    return out


def ready_to_sample(S) -> Callable:
    """prepare(model, name) for results.gather: NVAE with its decoder BatchNorm statistics re-estimated at
    t = 1 from S.bn_batches x S.bn_batch prior samples (as notebook 05 samples it); other models as they are."""

    def prepare(model, name: str):
        return reestimate_bn(model, 1.0, S.bn_batches, S.bn_batch) if name == "nvae" else model

    return prepare


def measure_entries(entries: list[dict], fd: Callable) -> None:
    """Each entry's fd_c10 (entry["fd"]) from its bank, None without one."""
    for entry in entries:
        entry["fd"] = None if entry["bank"] is None else fd(entry["bank"]["images"])


def floors_at(entries: list[dict], x_test: np.ndarray, seed: int, fd: Callable) -> dict:
    """n -> fd_c10 of the first n test images in the seeded order (nested subsets) at every n a model was
    measured at; each entry gets entry["floor"], the floor at its own n (None without samples)."""
    order = np.random.default_rng(seed).permutation(len(x_test))
    ns = sorted({e["n_samples"] for e in entries if e["n_samples"]})
    floor = {n: fd(x_test[order[:n]]) for n in ns}
    for entry in entries:
        entry["floor"] = floor.get(entry["n_samples"])
    return floor


def fid_label(n: int) -> str:
    """FID@<n>, with a warning when n is below the papers' 50k."""
    name = f"FID@{n // 1000}k" if n % 1000 == 0 else f"FID@{n:,}"
    return name + ("" if n >= N_FID_PAPERS else f" (not comparable with papers' {N_FID_PAPERS // 1000}k)")


def fid_plan(S) -> str:
    """What FID/KID measure in this run, from the values used (S.n_fid: fresh checkpoint samples, 0: none;
    S.n_fid_bank: the bank images measured, None: the whole bank), as measure_fid does it."""
    bank = f"its first {S.n_fid_bank:,} bank images" if S.n_fid_bank else "its whole sample bank"
    if S.n_fid:
        return (
            f"FID/KID: from {S.n_fid:,} fresh samples of each model's checkpoint (papers use 50,000), from {bank} "
            "where there is no checkpoint; against as many training images"
        )
    return (
        f"FID/KID: from {bank} for each model, against as many training images (N_FID_FULL = {S.n_fid}: no fresh "
        "checkpoint samples; papers use 50,000, so these read higher)"
    )


def measure_fid(entries: list[dict], S, cifar, device, bank_seed: int, prepare: Callable) -> str:
    """Each entry's FID/KID (entry["fid"], None without images) with the committed real-data floor at the same
    n; images: S.n_fid fresh samples of the checkpoint (drawn with the banks' seed) when S.n_fid > 0, else the
    bank (its first S.n_fid_bank images when set). Prints one line per model; returns the note for the table.
    Without the Inception network (pip install -e ".[fid]") every FID is None and the note says why."""
    try:
        for entry in entries:
            entry["fid"] = _fid(entry, S, cifar, device, bank_seed, prepare)
            if entry["fid"]:
                print(f"{entry['experiment']}: {_fid_line(entry['fid'])}")
    except metrics.InceptionUnavailable as err:
        for entry in entries:
            entry["fid"] = None
        return f"FID/KID skipped: {err}"
    return (
        "FID/KID: TF FID Inception pool3 features, against as many training images as samples (n beside "
        "each; FID is biased upwards at small n). Each FID line above names the real-data floor at its n (real "
        "test images against as many training images, from outputs/results/fid_calibration.json) where the "
        "calibration has one"
    )


def _fid(entry: dict, S, cifar, device, bank_seed: int, prepare: Callable) -> dict | None:
    images = entry["bank"]["images"] if entry["bank"] else None
    if (
        S.n_fid and entry["net"] is not None
    ):  # fresh samples, prepared once (a drawn bank was prepared already)
        net = entry["net"] if entry["source"] == "checkpoint" else prepare(entry["net"], entry["model"])
        images, _ = results.draw_samples(net, S.n_fid, seed=bank_seed)
    if images is None:
        return None
    measured = metrics.fid_from_bank(
        images[: S.n_fid_bank], "train", cifar=cifar, device=device, smoke=S.smoke
    )
    real = fid_calibration.real_floor(measured["n"], cifar.describe())  # test images at the same n, committed
    measured["floor"] = real["fid"] if real and measured["n_reference"] == measured["n"] else None
    return measured


def _fid_line(f: dict) -> str:
    floor = (
        f"real test images at the same n: FID {f['floor']:.2f}"
        if f["floor"] is not None
        else f"no real-data FID floor at n = {f['n']:,} in outputs/results/fid_calibration.json"
    )
    return (
        f"{fid_label(f['n'])} {f['fid']:.2f} against {f['n_reference']:,} training images; KID {f['kid']:.4f} "
        f"± {f['kid_std']:.4f} ({f['kid_subsets']} subsets of {f['kid_subset_size']}); {floor}"
    )


def ranking_finding(measured: list[dict], missing: list[str], smoke: bool) -> str:
    """Which measured model lands closest to the real-data floor at its own n (fd_c10 is biased by n, so the
    ratio to the same-n floor ranks them), with its precision and recall and what is still missing."""
    if not measured:
        return f"Finding: no model has samples to compare yet; missing: {', '.join(missing) or 'none'}."
    best = min(measured, key=lambda m: m["fd"].fd / m["floor"].fd)
    ns = ", ".join(f"{n:,}" for n in sorted({m["n_samples"] for m in measured}))
    return (
        f"Finding: of {len(measured)} measured model(s) (n = {ns} samples), {best['experiment']} lands closest "
        f"to the real-data floor (fd_c10 {best['fd'].fd:.3f} at n = {best['n_samples']:,}, "
        f"{best['fd'].fd / best['floor'].fd:.1f}x the floor at that n; precision {best['fd'].precision:.2f}, "
        f"recall {best['fd'].recall:.2f}); still missing: {', '.join(missing) or 'nothing'}"
        + (". Smoke runs: these numbers check the code, not the models." if smoke else ".")
    )


def tracking_summary(folder: Path, project: str | None = None, logged_in: Callable | None = None) -> str:
    """Where the runs under `folder` are tracked: wandb off or missing (local metrics.jsonl only), offline runs
    with the `wandb sync` command that uploads them, or the project's runs (name, step, loss) through
    wandb.Api() when logged in; an unreachable server is said, never raised."""
    offline = sorted(str(p) for p in Path(folder).glob("*/wandb/offline-run-*"))
    mode = os.environ.get("WANDB_MODE", "").lower()
    try:
        import wandb
    except ImportError:
        wandb = None
    if wandb is None or mode == "disabled":
        why = "is not installed" if wandb is None else "is disabled (WANDB_MODE=disabled)"
        return f"wandb {why}: runs keep local records only (metrics.jsonl in each folder of {folder})"
    if mode == "offline" or not (logged_in or wandb_logged_in)():
        return (
            f"{len(offline)} offline wandb run(s) under {folder}; upload them to compare in the web UI with:\n"
            f"  wandb sync {folder}/*/wandb/offline-run-*"
        )
    project = project or os.environ.get("WANDB_PROJECT", "cifar10-generative-workbook")
    try:
        table = [(r.name, r.summary.get("step"), r.summary.get("loss")) for r in wandb.Api().runs(project)]
    except Exception as err:  # no network, or the project does not exist yet
        return f"could not reach wandb ({type(err).__name__}: {err}); {len(offline)} offline run(s) under {folder}"
    return "\n".join(f"{name:<40} step {step}  loss {loss}" for name, step, loss in table) or "no runs yet"
