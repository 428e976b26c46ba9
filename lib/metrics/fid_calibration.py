"""Calibration of FID/KID (`lib.metrics.inception`) on the CIFAR-10 copy in use: what real-vs-real distances look like
at the workbook's sample counts, and how they grow under controlled degradations (`lib.degrade`).

Run as `python -m lib.metrics.fid_calibration` (options: --help). Each image set's pool3 features are computed once and
cached (outputs/cache/inception/), and every comparison reuses them; the results file is rewritten after each
set, so an interrupted run keeps what it finished and a rerun resumes from the cached features.
"""
from __future__ import annotations

import argparse
import io
import platform
import sys
import time

import numpy as np
import torch

from .. import degrade, runs
from ..data import load_cifar10
from . import inception

RESULTS = "fid_calibration"
NOISE_SIGMAS = (0.03, 0.1)   # additive Gaussian noise, std on the [0, 1] scale
BLUR_SIGMAS = (0.6, 1.2)     # Gaussian blur, std in pixels


def _features(name: str, images: np.ndarray, timings: dict) -> np.ndarray:
    """pool3 features of a derived image set, cached under outputs/cache/inception/calibration/<name>.npy."""
    path = runs.outputs_dir() / "cache" / "inception" / "calibration" / f"{name}-n{len(images)}.npy"
    if path.is_file():
        return np.load(path)
    start = time.perf_counter()
    features = inception.pool3_features(images, desc=name)
    timings[name] = {"n": len(images), "seconds": round(time.perf_counter() - start, 1)}
    buffer = io.BytesIO()
    np.save(buffer, features)
    runs.atomic_write_bytes(path, buffer.getvalue())
    return features


def _reference(cifar, split: str, n: int, timings: dict) -> np.ndarray:
    """Cached reference features of a split (lib.metrics.inception.reference_features), timed when computed."""
    start = time.perf_counter()
    features = inception.reference_features(cifar, split, n, smoke=False)
    seconds = time.perf_counter() - start
    if seconds > 60:  # more than a cache read
        timings[f"{split}[:{n}]"] = {"n": n, "seconds": round(seconds, 1)}
    return features


def _compare(name: str, real: np.ndarray, fake: np.ndarray, what: str) -> dict:
    """One labelled comparison (FID, KID, precision/recall, sample counts)."""
    return {"comparison": name, "what": what, **inception.fid_kid(real, fake)}


def calibrate(n_train: int, n_test: int, n_degraded: int, record: dict, save) -> None:
    """Fill record["comparisons"] step by step, calling save() after each new feature set."""
    cifar = load_cifar10()
    record.update(data=cifar.describe(), lossy=cifar.lossy)
    timings, rows = record["feature_timings"], record["comparisons"]
    train = _reference(cifar, "train", n_train, timings)
    test = _reference(cifar, "test", n_test, timings)
    half = n_test // 2
    rows.append(_compare("test vs train", train, test, f"test[:{n_test}] vs train[:{n_train}]"))
    rows.append(_compare("test vs train (half size)", train[:half], test[:half],
                         f"test[:{half}] vs train[:{half}]: the same n as the halves below"))
    rows.append(_compare("test halves", test[:half], test[half:], f"test[{half}:{n_test}] vs test[:{half}]"))
    rows.append(_compare("clean test vs train (degradation baseline)", train, test[:n_degraded],
                         f"test[:{n_degraded}] vs train[:{n_train}]"))
    save()
    clean = cifar.split("test", limit=n_degraded)[0]
    for kind, sigmas, apply in (("noise", NOISE_SIGMAS, degrade.add_noise), ("blur", BLUR_SIGMAS, degrade.gaussian_blur)):
        for sigma in sigmas:
            name = f"test-{kind}-{sigma}"
            features = _features(name, apply(clean, sigma), timings)
            unit = "on the [0, 1] scale" if kind == "noise" else "pixels"
            rows.append({**_compare(f"{kind} sigma={sigma} vs train", train, features,
                                    f"test[:{n_degraded}] with Gaussian {kind}, sigma {sigma} {unit}, vs train[:{n_train}]"),
                         "degradation": kind, "sigma": sigma})
            save()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=2000, help="reference training images (N_BANK)")
    parser.add_argument("--n-test", type=int, default=2000, help="test images; halves for the test-vs-test floor")
    parser.add_argument("--n-degraded", type=int, default=500, help="test images per degraded set")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (leave cores to others)")
    parser.add_argument("--note", default="", help="free text recorded in the results, e.g. about earlier runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = runs.pick_device()
    start = time.perf_counter()
    record = {"command": "python -m lib.metrics.fid_calibration " + " ".join(sys.argv[1:] if argv is None else argv),
              "network": inception.NETWORK, "machine": f"{runs.describe_device(device)}; {platform.platform()}",
              "torch": torch.__version__, "resize": "TF1 bilinear (source = i * 32 / 299) to 299x299, (v - 128) / 128",
              "kid": f"unbiased MMD^2, kernel (x.y/2048 + 1)^3, {inception.KID_SUBSETS} subsets of "
                     f"min({inception.KID_SUBSET_SIZE}, n, n_reference); kid_std is the std over subsets",
              "precision_recall": "Kynkaanniemi et al. 2019, k = 3, first min(n, n_reference) of each set",
              "note": "", "run_note": args.note, "feature_timings": {}, "comparisons": [], "finished": False}

    def save():
        record["wall_seconds"] = round(time.perf_counter() - start, 1)
        record["note"] = ("JPEG quality-75 copy of CIFAR-10: distances compare only within this workbook, not with "
                          "published FIDs on the original batches." if record.get("lossy") else "")
        runs.atomic_write_json(runs.results_path(RESULTS, smoke=False), record)

    calibrate(args.n_train, args.n_test, args.n_degraded, record, save)
    record["finished"] = True
    save()
    print(f"wrote {runs.results_path(RESULTS, smoke=False)} in {record['wall_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
