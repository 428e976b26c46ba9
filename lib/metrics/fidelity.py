"""Sample-quality distances (public names in `lib.metrics`): Fréchet distance, `fd_c10`, precision and recall,
the distances FID and KID share.

Fréchet distance between Gaussians N(mu1, S1) and N(mu2, S2) (Heusel et al. 2017, eq. 6; Dowson & Landau 1982):
    FD = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}),
with Tr (S1 S2)^{1/2} = sum_i sqrt(lambda_i) over the eigenvalues of the symmetric PSD S1^{1/2} S2 S1^{1/2}
(similar to S1 S2), computed in float64 without scipy.

`fd_c10` is the same distance in the penultimate features of the workbook's own CIFAR-10 classifier
(`lib.metrics.classifier`), so it works offline; every result carries that classifier's test accuracy and
the data copy. On the offline JPEG (quality 75) copy, fd_c10 compares only within this workbook.

Precision and recall follow Kynkäänniemi et al. 2019 (k-NN manifolds, k = 3): a sample is "covered" by a set
when it lies within the distance from some member of the set to that member's k-th nearest neighbour.

FID and KID on the TF FID Inception network are lib.metrics.inception's; no other network is ever used under
the name FID.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import torch

from ..common import devices, files, paths
from ..data import load_cifar10, to_uint8
from .classifier import TrainedClassifier, ensure_classifier
from .pixels import l2_distances

PR_K = 3  # k of the k-NN radii (Kynkäänniemi et al. 2019 use k = 3)


# ---------------------------------------------------------------- Fréchet distance


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative eigenvalues from round-off clipped to 0)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) in float64; mu: (F,), sigma: (F, F)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes do not match: mu {mu1.shape} {mu2.shape}, sigma {s1.shape} {s2.shape}")
    root1 = _sqrtm_psd(s1)
    middle = root1 @ s2 @ root1  # similar to S1 S2, symmetric PSD
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and unbiased covariance (F, F), float64, of features (N, F)."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need features (N >= 2, F), got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


# ---------------------------------------------------------------- the floor at n


@torch.no_grad()
def distance_floor(distance, real, reference, n: int, repeats: int = 5, seed: int = 0) -> dict:
    """What n real images score: distance(real[S], reference) for `repeats` random subsets S of n images of `real`
    (features, or images: whatever `distance` takes), as {"n", "mean", "sd", "values"}. A model's distance at n is
    read beside this floor at the same n: Fréchet distances are biased upwards at small n (for n draws of a
    d-dimensional standard Gaussian against its exact statistics, by about d/n + d(d+1)/(4(n-1)))."""
    return distance_floors(lambda x, ref: {"d": distance(x, ref)}, real, reference, n, repeats, seed)["d"]


@torch.no_grad()
def distance_floors(distances, real, reference, n: int, repeats: int = 5, seed: int = 0) -> dict:
    """distance_floor of several distances over the same subsets, each subset measured once: distances(real[S],
    reference) -> {name: value} (e.g. FID, KID, precision and recall from one call); {name: {"n", "mean", "sd",
    "values"}}. The subsets are drawn without replacement from `real`; when n is a large part of it they overlap,
    so the sd is a lower bound on the spread of independent draws (finite-population factor sqrt(1 - n/N))."""
    if not 1 <= n <= len(real):
        raise ValueError(f"the floor at n = {n} needs n real images, and there are {len(real)}")
    if repeats < 2:
        raise ValueError(f"repeats must be >= 2 for a spread, got {repeats}")
    rng = np.random.default_rng(seed)
    measured = [
        distances(real[np.sort(rng.choice(len(real), n, replace=False))], reference) for _ in range(repeats)
    ]
    floors = {}
    for name in measured[0]:
        values = [float(m[name]) for m in measured]
        floors[name] = {
            "n": n,
            "mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)),
            "values": values,
        }
    return floors


# ---------------------------------------------------------------- precision and recall


@torch.no_grad()
def _knn_radii(f: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each row of f (N, F) to its k-th nearest other row."""
    radii = []
    for start in range(0, len(f), chunk):
        d = l2_distances(f[start : start + chunk], f)  # (chunk, N); self at distance 0
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, -1])
    return torch.cat(radii)


@torch.no_grad()
def _covered(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """Fraction of queries inside at least one ball (centre_i, radius_i)."""
    inside = []
    for start in range(0, len(queries), chunk):
        d = l2_distances(queries[start : start + chunk], centres)  # (chunk, M), float64 like the radii
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside).float().mean()


def precision_recall(
    real_features, fake_features, k: int = PR_K, chunk: int = 1024, device=None
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, eqs. 1-2) of fake vs real features (N, F)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    device = device or torch.device("cpu")
    real = torch.as_tensor(np.asarray(real_features), dtype=torch.float32, device=device)
    fake = torch.as_tensor(np.asarray(fake_features), dtype=torch.float32, device=device)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"need more than k={k} real and fake samples, got {len(real)} and {len(fake)}")
    precision = _covered(fake, real, _knn_radii(real, k, chunk), chunk)  # fakes on the real manifold
    recall = _covered(real, fake, _knn_radii(fake, k, chunk), chunk)  # reals on the fake manifold
    return precision.item(), recall.item()


# ---------------------------------------------------------------- fd_c10


@dataclass(frozen=True)
class FDResult:
    """One fd_c10 measurement with what must be reported beside it."""

    fd: float  # Fréchet distance in the classifier's feature space
    n_samples: int  # images measured
    n_reference: int  # reference images behind the statistics
    reference: str  # what the reference set is
    classifier_accuracy: float  # test accuracy of the feature classifier
    data: str  # the data copy (CIFAR10.describe())
    lossy: bool  # JPEG copy: comparable only within this workbook
    precision: float | None = None
    recall: float | None = None

    def __str__(self) -> str:
        pr = "" if self.precision is None else f", precision {self.precision:.3f}, recall {self.recall:.3f}"
        note = (
            "JPEG q75 copy: comparable only within this workbook"
            if self.lossy
            else "original CIFAR-10 pixels"
        )
        return (
            f"fd_c10 = {self.fd:.3f} ({self.n_samples:,} samples vs {self.reference}, {self.n_reference:,} "
            f"images{pr}; classifier test accuracy {self.classifier_accuracy:.1%}; {note})"
        )


def fd_c10_reference_features(
    classifier: TrainedClassifier, images: np.ndarray, smoke: bool | None = None, device=None
) -> np.ndarray:
    """Features of reference images, cached under outputs/(smoke/)cache/fd_c10/, keyed by the
    images' bytes and the classifier weights (so each data copy and each classifier gets its own entry)."""
    smoke = paths.is_smoke() if smoke is None else smoke
    key = hashlib.sha256(images.tobytes()).hexdigest()[:16] + "-" + classifier.weights_sha256[:16]
    path = paths.output_dir("cache", smoke) / "fd_c10" / f"{key}.npz"
    if path.is_file():
        with np.load(path) as f:
            return f["features"].astype(np.float64)
    features = classifier.features(images, device=device)
    buffer = io.BytesIO()
    np.savez(buffer, features=features.astype(np.float32), data=np.str_(classifier.data))
    files.atomic_write_bytes(path, buffer.getvalue())
    return features


def fd_c10(
    images,
    reference="train",
    classifier: TrainedClassifier | None = None,
    cifar=None,
    n_reference: int | None = None,
    with_pr: bool = True,
    n_pr: int = 10_000,
    device=None,
    smoke: bool | None = None,
) -> FDResult:
    """fd_c10 of images (N, 3, 32, 32; uint8 or [0, 1]) against a split name ("train", "test", ...) or images.

    Precision/recall use equal-size sets: the first min(N, n_reference, n_pr) of each. `smoke` (None:
    $WORKBOOK_SMOKE) picks the smoke classifier and keeps the reference-feature cache under outputs/smoke/.
    """
    smoke = paths.is_smoke() if smoke is None else smoke
    cifar = cifar if cifar is not None or not isinstance(reference, str) else load_cifar10()
    classifier = classifier or ensure_classifier(cifar, smoke=smoke, device=device)
    if isinstance(reference, str):
        ref_images, what = cifar.split(reference, limit=n_reference)[0], f"the {reference} split"
    else:
        ref_images, what = to_uint8(reference)[:n_reference], "the given reference images"
    ref = fd_c10_reference_features(classifier, np.ascontiguousarray(ref_images), smoke=smoke, device=device)
    fake = classifier.features(to_uint8(images), device=device)
    fd = frechet_distance(*feature_stats(fake), *feature_stats(ref))
    precision = recall = None
    if with_pr:
        n = min(len(fake), len(ref), n_pr)
        precision, recall = precision_recall(ref[:n], fake[:n], device=devices.pick_device(device))
    data = cifar.describe() if cifar is not None else classifier.data
    lossy = cifar.lossy if cifar is not None else classifier.lossy
    return FDResult(fd, len(fake), len(ref), what, classifier.test_accuracy, data, lossy, precision, recall)


# ---------------------------------------------------------------- FID / IS / KID via torch-fidelity
