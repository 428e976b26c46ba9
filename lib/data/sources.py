"""CIFAR-10 on disk, for `lib.data`: finding the source, decoding it once to uint8 arrays, and the cache.

Sources: torchvision's pickled batches (`cifar-10-batches-py/`, or the root itself, holding data_batch_1..5
and test_batch; downloaded through torchvision when allowed) or image folders `train/<class>/*`,
`test/<class>/*` (png, jpg, jpeg) whose class folders are exactly the 10 CIFAR-10 names.

Order. Pickled batches keep their original order (already class-mixed). Image folders are listed by
(class folder, file name) and then permuted by `np.random.default_rng(FOLDER_ORDER_SEED)`, train and test
separately, so any prefix is class-mixed and the order never depends on the file system.

Cache. `<root>/cifar10_uint8.npz`, an uncompressed npz holding x_train, y_train, x_test, y_test, source,
image_format and fingerprint: a hash of the sorted (relative path, size, mtime_ns) of every source file.
A changed fingerprint or an unreadable cache file means a rebuild. When the data folder is read-only the
cache goes to `$XDG_CACHE_HOME/cifar10-workbook/` (else `~/.cache/cifar10-workbook/`), named by a hash
of the root path.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.std import tqdm  # text, not a notebook widget: a saved notebook keeps the last state

from ..common.files import atomic_write_bytes
from ..common.paths import repo_root

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PICKLE_FOLDER = "cifar-10-batches-py"
PICKLE_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
IMAGE_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}
FOLDER_ORDER_SEED = 0  # seeds the fixed shuffle of folder-sourced images
CACHE_NAME = "cifar10_uint8.npz"
CACHE_VERSION = "1"  # bump when the cached arrays' meaning changes
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
CHUNK = 1000  # images per decoding task
POOL_MIN_IMAGES = 4000  # fewer images decode in-process: a worker pool's start-up would cost more


class DataError(Exception):
    """A data-layer problem; the message names the file or folder and how to fix it."""


# ---------------------------------------------------------------- finding the source


@dataclass(frozen=True)
class Source:
    """What was found under a root: its kind and its files per split, relative to `base`."""

    kind: str  # "pickle" or "folder"
    base: Path
    files: dict[str, list[str]]  # split -> relative paths; folders: already in the stored order
    labels: dict[str, np.ndarray]  # folders: split -> int64 labels aligned with files; pickles: {}


def find_source(root: Path) -> Source | None:
    """Pickled batches in root/cifar-10-batches-py or root, else image folders, else None."""
    for base in (root / PICKLE_FOLDER, root):
        names = [name for split in ("train", "test") for name in PICKLE_BATCHES[split]]
        present = [name for name in names if (base / name).is_file()]
        if present or base.name == PICKLE_FOLDER and base.is_dir():
            missing = [name for name in names if name not in present]
            if missing:
                raise DataError(
                    f"{base} holds CIFAR-10 pickled batches but lacks {', '.join(missing)}: "
                    f"delete {base} and download again (download=True), or restore the missing files."
                )
            return Source("pickle", base, {k: list(v) for k, v in PICKLE_BATCHES.items()}, {})
    if (root / "train").is_dir() or (root / "test").is_dir():
        return _scan_folders(root)
    return None


def _scan_folders(root: Path) -> Source:
    """List train/<class>/* and test/<class>/*, checking the class folders; shuffle to the stored order."""
    files, labels = {}, {}
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            raise DataError(
                f"{root} has image folders but no {split}/ folder: both train/<class>/* and "
                f"test/<class>/* are needed. Unpack the full data set again or set CIFAR10_DIR "
                f"to a complete copy."
            )
        found = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
        if found != sorted(CLASSES):
            raise DataError(
                f"{folder} has class folders {found}, expected the 10 CIFAR-10 classes {list(CLASSES)} "
                f"(missing: {sorted(set(CLASSES) - set(found))}, unexpected: "
                f"{sorted(set(found) - set(CLASSES))}). Rename or remove folders to match."
            )
        paths, ys = [], []
        for label, name in enumerate(CLASSES):
            images = sorted(
                e.name
                for e in os.scandir(folder / name)
                if e.is_file()
                and not e.name.startswith(".")
                and Path(e.name).suffix.lower() in IMAGE_SUFFIXES
            )
            if not images:
                raise DataError(
                    f"class folder {folder / name} holds no images (.png, .jpg, .jpeg): "
                    f"restore its images or unpack the data set again."
                )
            paths += [f"{split}/{name}/{image}" for image in images]
            ys += [label] * len(images)
        order = np.random.default_rng(FOLDER_ORDER_SEED).permutation(len(paths))
        files[split], labels[split] = [paths[i] for i in order], np.asarray(ys, dtype=np.int64)[order]
    return Source("folder", root, files, labels)


def missing_message(root: Path, why: str) -> str:
    """Where the loader looked for CIFAR-10, why it stopped, and how to provide the data."""
    env = os.environ.get("CIFAR10_DIR")
    return (
        f"No CIFAR-10 found at {root}: looked for torchvision's pickled batches in {root / PICKLE_FOLDER} "
        f"or {root}, and for image folders {root}/train/<class>/ and {root}/test/<class>/. The root is the "
        f"root argument, else $CIFAR10_DIR (now {env or 'unset'}; a relative CIFAR10_DIR is taken against the "
        f"repository root, {repo_root()}, not the working folder), else <repo>/data/cifar10. Provide the "
        f"data by unpacking the offline copy (`mkdir -p {root} && xz -dc ../shared/data/cifar10-jpeg.tar.xz "
        f"| tar x -C {root}`, see shared/data/README.md), by downloading on a machine with internet "
        f"(load_cifar10(download=True) or CIFAR10_DOWNLOAD=1), or by setting CIFAR10_DIR to a folder that "
        f"holds CIFAR-10. {why}"
    )


def download(root: Path) -> None:
    """Fetch the original batches into root/cifar-10-batches-py with torchvision."""
    try:
        from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10

        for train in (True, False):
            TorchvisionCIFAR10(str(root), train=train, download=True)
    except Exception as err:
        raise DataError(missing_message(root, f"Downloading with torchvision failed: {err!r}.")) from err


def fingerprint(source: Source) -> str:
    """Hash of the sorted (relative path, size, mtime_ns) of the source files and the cache version."""
    digest = hashlib.sha256(f"{CACHE_VERSION} {source.kind} {FOLDER_ORDER_SEED}\n".encode())
    for relpath in sorted(p for split in ("train", "test") for p in source.files[split]):
        stat = os.stat(source.base / relpath)
        digest.update(f"{relpath}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------- decoding


def decode(source: Source) -> dict[str, np.ndarray | str]:
    """Decode the source files into ARRAY_KEYS plus source and image_format."""
    if source.kind == "pickle":
        arrays = {}
        for split in ("train", "test"):
            batches = [_read_batch(source.base / name) for name in source.files[split]]
            arrays[f"x_{split}"] = np.concatenate([x for x, _ in batches])
            arrays[f"y_{split}"] = np.concatenate([y for _, y in batches])
        return {**arrays, "source": "pickle", "image_format": "original"}
    paths = [str(source.base / p) for split in ("train", "test") for p in source.files[split]]
    x, n_train = _decode_images(paths), len(source.files["train"])
    formats = sorted({IMAGE_SUFFIXES[Path(p).suffix.lower()] for p in paths})
    return {
        "x_train": x[:n_train],
        "y_train": source.labels["train"],
        "x_test": x[n_train:],
        "y_test": source.labels["test"],
        "source": "folder",
        "image_format": "+".join(formats),
    }


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One torchvision batch file: x uint8 (n, 3, 32, 32), y int64 (n,)."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        x, y = batch[b"data"], np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as err:
        raise DataError(
            f"cannot read CIFAR-10 batch {path} ({err!r}): the file is corrupt or not a torchvision "
            f"batch. Delete {path.parent} and download again, or restore the file."
        ) from err
    if not (
        isinstance(x, np.ndarray)
        and x.dtype == np.uint8
        and x.ndim == 2
        and x.shape[1] == 3072
        and y.shape == (len(x),)
        and np.all((y >= 0) & (y < len(CLASSES)))
    ):
        raise DataError(
            f"CIFAR-10 batch {path} does not hold uint8 data (n, 3072) with n labels in 0..9: "
            f"delete {path.parent} and download again."
        )
    return x.reshape(-1, 3, 32, 32), y  # rows are R, G, B planes of 32x32, row-major


def _decode_images(paths: list[str]) -> np.ndarray:
    """Decode image files to uint8 (N, 3, 32, 32) in chunks, on a process pool when there are many."""
    x = np.empty((len(paths), 3, 32, 32), dtype=np.uint8)
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    with tqdm(total=len(paths), desc="decoding CIFAR-10 images", unit="img") as bar:
        for i, block in enumerate(_map_chunks(chunks)):
            x[i * CHUNK : i * CHUNK + len(block)] = block
            bar.update(len(block))
    return x


def _map_chunks(chunks: list[list[str]]):
    """Yield _decode_chunk of each chunk, in order."""
    workers = min(
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8
    )
    if workers < 2 or sum(map(len, chunks)) < POOL_MIN_IMAGES:
        yield from map(_decode_chunk, chunks)
        return
    pool = ProcessPoolExecutor(workers)
    try:
        yield from pool.map(_decode_chunk, chunks)
    finally:
        pool.shutdown(cancel_futures=True)


def _decode_chunk(paths: list[str]) -> np.ndarray:
    """Decode a few image files to uint8 (n, 3, 32, 32)."""
    out = np.empty((len(paths), 32, 32, 3), dtype=np.uint8)
    for k, path in enumerate(paths):
        out[k] = _decode_image(path)
    return out.transpose(0, 3, 1, 2)  # (n, H, W, C) -> (n, C, H, W)


def _decode_image(path: str) -> np.ndarray:
    """One 32x32 RGB image file as uint8 (32, 32, 3); anything else is a DataError naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            mode, size, pixels = img.mode, img.size, np.asarray(img)
    except Exception as err:
        raise DataError(
            f"cannot decode image {path} ({err!r}): replace the file or unpack the data set again."
        ) from err
    if size != (32, 32):
        raise DataError(
            f"image {path} is {size[0]}x{size[1]} pixels, CIFAR-10 images are 32x32: remove or replace it."
        )
    if mode != "RGB":
        raise DataError(
            f"image {path} has mode {mode!r}, expected 'RGB' (grayscale, palette and alpha images are "
            f"not converted silently): convert it to RGB or replace it."
        )
    return pixels


# ---------------------------------------------------------------- the cache


def _cache_paths(root: Path) -> tuple[Path, Path]:
    """Where the cache lives: next to the data, else in the user cache dir, keyed by the root path."""
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cifar10-workbook"
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return root / CACHE_NAME, user / f"{root.name}-{key}.npz"


def read_cache(root: Path, digest: str) -> dict | None:
    """The cached arrays whose fingerprint matches, or None; an unreadable cache file is a warning."""
    for path in _cache_paths(root):
        if not path.is_file():
            continue
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["fingerprint"]) != digest:
                    continue  # stale: the source changed, so it is rebuilt and overwritten
                arrays = {k: f[k] for k in (*ARRAY_KEYS, "source", "image_format")}
            for split in ("train", "test"):
                x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
                if (
                    x.dtype != np.uint8
                    or x.shape[1:] != (3, 32, 32)
                    or y.dtype != np.int64
                    or y.shape != x.shape[:1]
                ):
                    raise ValueError(f"{split} arrays have shapes {x.shape} {x.dtype}, {y.shape} {y.dtype}")
            return arrays
        except Exception as err:
            warnings.warn(
                f"CIFAR-10 cache {path} is unreadable ({err!r}); rebuilding it from the source files.",
                stacklevel=2,
            )
    return None


def write_cache(root: Path, arrays: dict, digest: str) -> None:
    """Write the cache next to the data, else (read-only data folder) to the user cache dir, with a warning."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, fingerprint=np.str_(digest))
    errors = []
    for path in _cache_paths(root):
        try:
            if path.parent == root and not os.access(root, os.W_OK):
                raise PermissionError(f"{root} is not writable")
            atomic_write_bytes(path, buffer.getbuffer())
        except OSError as err:
            errors.append(f"{path}: {err}")
            continue
        if errors:
            warnings.warn(
                f"cannot write the CIFAR-10 cache next to the data ({errors[0]}); cached it in {path}.",
                stacklevel=2,
            )
        return
    warnings.warn(
        f"cannot write the CIFAR-10 cache ({'; '.join(errors)}): the data is decoded again next time.",
        stacklevel=2,
    )
