"""Calibration of FID/KID (`lib.metrics.inception`) on the CIFAR-10 copy in use: what real-vs-real distances look like
at the workbook's sample counts, and how they grow under controlled degradations (`lib.data.degrade`).

Run as `python -m lib.metrics.fid_calibration` (options: --help). Each image set's pool3 features are computed once and
cached (outputs/cache/inception/), and every comparison reuses them; the results file is rewritten after each
set, so an interrupted run keeps what it finished and a rerun resumes from the cached features.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..common import devices, files, paths
from ..data import degrade, load_cifar10
from . import inception
from .fidelity import distance_floors

RESULTS = "fid_calibration"
NOISE_SIGMAS = (0.03, 0.1)  # additive Gaussian noise, std on the [0, 1] scale
BLUR_SIGMAS = (0.6, 1.2)  # Gaussian blur, std in pixels
JPEG_QUALITIES = (75,)  # one more JPEG pass at the copy's quality: a proxy for what its compression does
SIZES = (200, 500, 1000, 2000, 5000)  # test vs train at n vs n: cpu's banks, short's, full's, the reference's
FLOOR_SIZES = (200, 500, 1000)  # the floor notebook 06 reads models beside: random test subsets of n vs train
FLOOR_REPEATS = 5  # random subsets per floor (mean ± sd)

# A published real-vs-real figure on the original CIFAR-10 batches with the same network, resize and n. torch-fidelity
# (Obukhov et al.) pins it in its test suite: FID of 5,000 random training images against 5,000 random test images
# (numpy RandomState(2020) subsets, PNG dumps of torchvision's batches), which its TF-FID port reproduces to a
# relative 1e-5 of the TTUR TensorFlow reference code (tests/tf1/numerical_precision/test_metric_fid_fidelity.py);
# KID and precision/recall come from the same test suite (tests/torch_versions_ge_1_13_0/test_versions.py).
PUBLISHED = {
    "n": 5000,
    "n_reference": 5000,
    "fid": 10.3233274,
    "kid": -2.907863e-05,
    "kid_std": 1.023118e-04,
    "precision": 0.6852,
    "recall": 0.6908,
    "data": "original CIFAR-10 batches (torchvision), random 5,000 of train vs random 5,000 of test",
    "source": "torch-fidelity test suite (github.com/toshas/torch-fidelity): "
    "tests/tf1/numerical_precision/test_metric_fid_fidelity.py asserts FID 10.3233274 and a "
    "relative difference < 1e-5 from the TTUR TensorFlow reference; "
    "tests/torch_versions_ge_1_13_0/test_versions.py asserts KID -2.907863e-05 +- 1.023118e-04 "
    "(100 subsets of 1,000), precision 0.6852, recall 0.6908",
}


def _features(name: str, images: np.ndarray, timings: dict) -> np.ndarray:
    """pool3 features of a derived image set, cached under outputs/cache/inception/calibration/<name>-n<N>.npy; the
    degradations are prefix-stable (lib.data.degrade), so a larger set extends a cached smaller one."""
    folder = paths.output_dir("cache", smoke=False) / "inception" / "calibration"
    return _timed(
        f"{name}[:{len(images)}]",
        len(images),
        timings,
        lambda: inception.extend_cached(images, folder, name, desc=name),
    )


def _reference(cifar, split: str, n: int, timings: dict) -> np.ndarray:
    """Cached reference features of a split (lib.metrics.inception.reference_features), timed when computed."""
    return _timed(
        f"{split}[:{n}]", n, timings, lambda: inception.reference_features(cifar, split, n, smoke=False)
    )


def _timed(label: str, n: int, timings: dict, compute) -> np.ndarray:
    """compute(), its wall time recorded in timings[label] when it was more than a cache read (over a minute)."""
    start = time.perf_counter()
    features = compute()
    seconds = time.perf_counter() - start
    if seconds > 60:
        timings[label] = {"n": n, "seconds": round(seconds, 1)}
    return features


def _compare(name: str, real: np.ndarray, fake: np.ndarray, what: str, **extra) -> dict:
    """One labelled comparison (FID, KID, precision/recall, sample counts)."""
    return {"comparison": name, "what": what, **inception.fid_kid(real, fake), **extra}


def floor_row(train: np.ndarray, test: np.ndarray, n: int, repeats: int = FLOOR_REPEATS) -> dict:
    """The real-data floor at n the way notebook 06 reads a model: FID, KID, precision and recall of `repeats` random
    subsets of n test images against all of `train` (lib.metrics.distance_floors), each as its mean with its sd
    over the subsets in row["sd"]."""
    floors = distance_floors(lambda x, ref: inception.fid_kid(ref, x), test, train, n, repeats)
    names = ("fid", "kid", "precision", "recall")
    return {
        "comparison": "test subsets vs train (floor)",
        "what": f"{repeats} random subsets of {n} of test[:{len(test)}] vs train[:{len(train)}]",
        "n": n,
        "n_reference": len(train),
        "repeats": repeats,
        **{name: floors[name]["mean"] for name in names},
        "sd": {name: floors[name]["sd"] for name in names},
    }


def calibrate(
    n_train: int, n_test: int, n_degraded: int, record: dict, save, sizes=SIZES, floor_sizes=FLOOR_SIZES
) -> None:
    """Fill record["comparisons"] step by step, calling save() after each new feature set. The test-vs-train rows
    are n vs n, the way notebook 06 measured a bank before issue 36; the floor rows (floor_row, at each n of
    floor_sizes below n_test) are what 06 reads a model beside now: subsets of n test images vs all train ones."""
    cifar = load_cifar10()
    record.update(data=cifar.describe(), lossy=cifar.lossy, published=PUBLISHED)
    timings, rows = record["feature_timings"], record["comparisons"]
    train = _reference(cifar, "train", n_train, timings)
    test = _reference(cifar, "test", n_test, timings)
    for n in sorted({n for n in sizes if n <= min(n_train, n_test)}):
        extra = {"published_original": PUBLISHED["fid"]} if n == PUBLISHED["n"] else {}
        rows.append(_compare("test vs train", train[:n], test[:n], f"test[:{n}] vs train[:{n}]", **extra))
    rows += [floor_row(train, test, n) for n in floor_sizes if n < n_test]
    half = n_test // 2
    rows.append(
        _compare(
            "test vs train (half size)",
            train[:half],
            test[:half],
            f"test[:{half}] vs train[:{half}]: the same n as the halves below",
        )
    )
    rows.append(
        _compare(
            "test halves", test[:half], test[half : 2 * half], f"test[{half}:{2 * half}] vs test[:{half}]"
        )
    )
    save()
    n_deg = min(n_degraded, n_test, n_train)
    rows.append(
        _compare(
            "clean test vs train (degradation baseline)",
            train[:n_deg],
            test[:n_deg],
            f"test[:{n_deg}] vs train[:{n_deg}]",
            degradation="none",
            sigma=0.0,
        )
    )
    clean = cifar.split("test", limit=n_deg)[0]
    for kind, sigmas, apply in (
        ("noise", NOISE_SIGMAS, degrade.add_noise),
        ("blur", BLUR_SIGMAS, degrade.gaussian_blur),
    ):
        for sigma in sigmas:
            features = _features(f"test-{kind}-{sigma}", apply(clean, sigma), timings)
            unit = "on the [0, 1] scale" if kind == "noise" else "pixels"
            rows.append(
                _compare(
                    f"{kind} sigma={sigma} vs train",
                    train[:n_deg],
                    features,
                    f"test[:{n_deg}] with Gaussian {kind}, sigma {sigma} {unit}, vs train[:{n_deg}]",
                    degradation=kind,
                    sigma=sigma,
                )
            )
            save()
    for quality in JPEG_QUALITIES:
        features = _features(f"test-jpeg-{quality}", degrade.jpeg(clean, quality), timings)
        rows.append(
            _compare(
                f"jpeg quality={quality} vs train",
                train[:n_deg],
                features,
                f"test[:{n_deg}] JPEG-compressed once more at quality {quality}, vs train[:{n_deg}]",
                degradation="jpeg",
                quality=quality,
            )
        )
        save()


def real_floor(n: int, data: str | None = None) -> dict | None:
    """The committed test-vs-train comparison at n vs n (outputs/results/fid_calibration.json): the FID that n real
    test images score where a model's n samples are measured (lib.metrics.fid_from_bank). None when the calibration
    has no row at that n, or was measured on another kind of data copy (`data`: a cifar.describe() line; the
    folder it names is ignored)."""
    path = results_file()
    if not path.is_file():
        return None
    cal = json.loads(path.read_text())
    if data is not None and str(cal.get("data", "")).split(" at ", 1)[0] != data.split(" at ", 1)[0]:
        return None
    return next(
        (
            r
            for r in cal.get("comparisons", [])
            if r.get("comparison") == "test vs train" and r.get("n") == n and r.get("n_reference") == n
        ),
        None,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n-train",
        type=int,
        default=5000,
        help="training images (test vs train at n = 200, 500, 1,000, "
        "2,000 and 5,000 as far as they reach; 5,000 is the published reference's n)",
    )
    parser.add_argument(
        "--n-test", type=int, default=5000, help="test images; halves for the test-vs-test floor"
    )
    parser.add_argument(
        "--n-degraded",
        type=int,
        default=1000,
        help="test images per degraded set (the short profile's bank size), against as many training images",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (leave cores to others)")
    parser.add_argument(
        "--note", default="", help="free text recorded in the results, e.g. about earlier runs"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = devices.pick_device()
    start = time.perf_counter()
    record = {
        "command": "python -m lib.metrics.fid_calibration "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "network": inception.NETWORK,
        "machine": f"{devices.describe_device(device)}; {platform.platform()}",
        "torch": torch.__version__,
        "resize": "TF1 bilinear (source = i * 32 / 299) to 299x299, (v - 128) / 128",
        "kid": f"unbiased MMD^2, kernel (x.y/2048 + 1)^3, {inception.KID_SUBSETS} subsets of "
        f"min({inception.KID_SUBSET_SIZE}, n, n_reference); kid_std is the std over subsets",
        "precision_recall": "Kynkaanniemi et al. 2019, k = 3, first min(n, n_reference) of each set",
        "note": "",
        "run_note": args.note,
        "feature_timings": {},
        "comparisons": [],
        "finished": False,
    }

    def save():
        record["wall_seconds"] = round(time.perf_counter() - start, 1)
        record["note"] = (
            "JPEG quality-75 copy of CIFAR-10: the test-vs-train row at n = 5,000 sits beside the same "
            "comparison on the original batches (published_original; source under 'published') to show "
            "what the copy changes; model FIDs measured here compare only within this workbook."
            if record.get("lossy")
            else ""
        )
        files.atomic_write_json(results_file(), record)

    calibrate(args.n_train, args.n_test, args.n_degraded, record, save)
    record["finished"] = True
    save()
    print(f"wrote {results_file()} in {record['wall_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()


def results_file() -> Path:
    """outputs/results/fid_calibration.json: committed, measured on real data only (never a smoke result)."""
    return paths.output_dir("results", smoke=False) / f"{RESULTS}.json"
