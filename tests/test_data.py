"""Behavioural tests of lib.data and lib.data.sources on tiny CIFAR-10 copies written by the tests themselves.

Covers: pickle and image-folder decoding (exact pixels and labels), the stored order, the cache (reuse,
rebuild, corruption, read-only fallback), root resolution, downloads (monkeypatched, no network), every
bad-input DataError, splits, InfiniteBatches (epochs, seeds, flips, random access, DDP slices), eval_batch
and the data facts.
"""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from lib import data
from lib.data import sources

N_TRAIN, N_TEST = 6, 3  # images per class in the folder fixtures


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    """The user cache dir lives in tmp; CIFAR10_DIR is unset unless a test sets it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    return tmp_path / "xdg" / "cifar10-workbook"


def write_pickles(root, n: int = 20, seed: int = 0, nested: bool = True):
    """torchvision's batches (5 train + 1 test of n random images); returns x_train, y_train, x_test, y_test."""
    rng = np.random.default_rng(seed)
    folder = root / sources.PICKLE_FOLDER if nested else root
    folder.mkdir(parents=True, exist_ok=True)
    planted = {"train": ([], []), "test": ([], [])}
    for split, names in sources.PICKLE_BATCHES.items():
        for name in names:
            x, y = rng.integers(0, 256, (n, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, n)]
            with open(folder / name, "wb") as f:
                pickle.dump({b"batch_label": name.encode(), b"data": x, b"labels": y}, f)
            planted[split][0].append(x.reshape(n, 3, 32, 32))
            planted[split][1].extend(y)
    return [
        np.concatenate(planted["train"][0]),
        np.array(planted["train"][1]),
        np.concatenate(planted["test"][0]),
        np.array(planted["test"][1]),
    ]


def write_folders(root, ext: str = "png", seed: int = 0, reverse: bool = False) -> dict:
    """train/<class>/NNNN.ext and test/<class>/NNNN.ext of random RGB images; returns relpath -> (x, label)."""
    rng = np.random.default_rng(seed)
    planted = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        for label, name in enumerate(data.CLASSES):
            (root / split / name).mkdir(parents=True)
            for k in range(n):
                planted[f"{split}/{name}/{k:04d}.{ext}"] = (
                    rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
                    label,
                )
    for relpath, (img, _) in sorted(planted.items(), reverse=reverse):  # creation order must not matter
        Image.fromarray(img).save(root / relpath, quality=95)
    return {relpath: (img.transpose(2, 0, 1), label) for relpath, (img, label) in planted.items()}


def by_bytes(x, y) -> dict:
    """image bytes -> label, for matching decoded images against planted ones."""
    return {img.tobytes(): int(label) for img, label in zip(x, y)}


def planted_split(planted: dict, split: str) -> dict:
    """image bytes -> label of one split of a folder fixture."""
    return {img.tobytes(): label for rel, (img, label) in planted.items() if rel.startswith(split + "/")}


def boom(*args, **kwargs):
    raise AssertionError("decoded again although a valid cache exists")


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize("nested", [True, False])
def test_pickles_decode_to_exactly_the_planted_arrays(tmp_path, nested):
    planted = write_pickles(tmp_path / "c", nested=nested)
    cifar = data.load_cifar10(tmp_path / "c")
    for got, want in zip((cifar.x_train, cifar.y_train, cifar.x_test, cifar.y_test), planted):
        np.testing.assert_array_equal(got, want)
    assert cifar.x_train.shape == (100, 3, 32, 32) and cifar.x_test.shape == (20, 3, 32, 32)
    assert cifar.x_train.dtype == np.uint8 and cifar.y_train.dtype == np.int64
    assert (cifar.source, cifar.image_format, cifar.lossy) == ("pickle", "original", False)
    assert "original pixels" in cifar.describe()


def test_png_folders_round_trip_exactly_with_folder_labels(tmp_path):
    planted = write_folders(tmp_path / "c")
    cifar = data.load_cifar10(tmp_path / "c")
    assert cifar.x_train.shape == (10 * N_TRAIN, 3, 32, 32) and cifar.x_test.shape == (10 * N_TEST, 3, 32, 32)
    assert by_bytes(cifar.x_train, cifar.y_train) == planted_split(planted, "train")
    assert by_bytes(cifar.x_test, cifar.y_test) == planted_split(planted, "test")
    assert (cifar.source, cifar.image_format, cifar.lossy) == ("folder", "png", False)


def test_jpeg_folders_decode_like_pillow_and_are_marked_lossy(tmp_path):
    planted = write_folders(tmp_path / "c", ext="jpg")
    cifar = data.load_cifar10(tmp_path / "c")
    pillow = {
        np.asarray(Image.open(tmp_path / "c" / rel)).transpose(2, 0, 1).tobytes(): label
        for rel, (_, label) in planted.items()
        if rel.startswith("train/")
    }
    assert by_bytes(cifar.x_train, cifar.y_train) == pillow
    assert (cifar.image_format, cifar.lossy) == ("jpeg", True) and "JPEG, lossy" in cifar.describe()


def test_process_pool_decoding_matches_in_process_decoding(tmp_path, monkeypatch):
    write_folders(tmp_path / "c")
    serial = data.load_cifar10(tmp_path / "c", cache=False)
    monkeypatch.setattr(sources, "POOL_MIN_IMAGES", 0)
    monkeypatch.setattr(sources, "CHUNK", 7)
    pooled = data.load_cifar10(tmp_path / "c", cache=False)
    np.testing.assert_array_equal(pooled.x_train, serial.x_train)
    np.testing.assert_array_equal(pooled.x_test, serial.x_test)


def test_folder_order_is_fixed_class_mixed_and_independent_of_creation_order(tmp_path):
    write_folders(tmp_path / "a")
    write_folders(tmp_path / "b", reverse=True)
    a, b = data.load_cifar10(tmp_path / "a"), data.load_cifar10(tmp_path / "b", cache=False)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert len(set(a.y_train[:10].tolist())) >= 4  # a short prefix already spans several classes
    assert np.any(np.diff(a.y_train) < 0)  # not sorted by class


# ---------------------------------------------------------------- cache


def test_cache_is_written_and_reused(tmp_path, monkeypatch):
    planted = write_folders(tmp_path / "c")
    first = data.load_cifar10(tmp_path / "c")
    assert (tmp_path / "c" / sources.CACHE_NAME).is_file()
    monkeypatch.setattr(sources, "decode", boom)
    second = data.load_cifar10(tmp_path / "c")
    np.testing.assert_array_equal(second.x_train, first.x_train)
    assert by_bytes(second.x_test, second.y_test) == planted_split(planted, "test")
    assert (second.source, second.image_format) == ("folder", "png")


def test_cache_is_rebuilt_when_a_source_file_changes(tmp_path):
    write_folders(tmp_path / "c")
    data.load_cifar10(tmp_path / "c")
    changed = tmp_path / "c" / "train" / "cat" / "0000.png"
    new = np.full((32, 32, 3), 7, np.uint8)
    Image.fromarray(new).save(changed)
    os.utime(changed, ns=(1_000_000_000, 1_000_000_000))  # a different mtime whatever the clock resolution
    cifar = data.load_cifar10(tmp_path / "c")
    hits = [i for i, img in enumerate(cifar.x_train) if (img == 7).all()]
    assert len(hits) == 1 and data.CLASSES[cifar.y_train[hits[0]]] == "cat"


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path, monkeypatch, damage):
    write_folders(tmp_path / "c")
    good = data.load_cifar10(tmp_path / "c")
    cache = tmp_path / "c" / sources.CACHE_NAME
    cache.write_bytes(cache.read_bytes()[:5000] if damage == "truncate" else b"not a cache")
    with pytest.warns(UserWarning, match="unreadable"):
        again = data.load_cifar10(tmp_path / "c")
    np.testing.assert_array_equal(again.x_train, good.x_train)
    monkeypatch.setattr(sources, "decode", boom)  # the rebuilt cache is valid again
    np.testing.assert_array_equal(data.load_cifar10(tmp_path / "c").x_test, good.x_test)


def test_read_only_data_folder_falls_back_to_the_user_cache(tmp_path, monkeypatch, user_cache):
    write_pickles(tmp_path / "c")
    os.chmod(tmp_path / "c", 0o555)
    try:
        if os.access(tmp_path / "c", os.W_OK):
            pytest.skip("running as root: chmod does not make the folder read-only")
        with pytest.warns(UserWarning, match="cifar10-workbook"):
            first = data.load_cifar10(tmp_path / "c")
        assert (
            not (tmp_path / "c" / sources.CACHE_NAME).exists() and len(list(user_cache.glob("c-*.npz"))) == 1
        )
        monkeypatch.setattr(sources, "decode", boom)
        np.testing.assert_array_equal(data.load_cifar10(tmp_path / "c").x_train, first.x_train)
    finally:
        os.chmod(tmp_path / "c", 0o755)


def test_failed_cache_write_next_to_data_falls_back_to_the_user_cache(tmp_path, monkeypatch, user_cache):
    x_train, *_ = write_pickles(tmp_path / "c")
    real_write = sources.atomic_write_bytes

    def refuse_data_folder(path, payload):
        if path.parent == tmp_path / "c":
            raise PermissionError(13, "Permission denied", str(path))
        real_write(path, payload)

    monkeypatch.setattr(sources, "atomic_write_bytes", refuse_data_folder)
    with pytest.warns(UserWarning, match="Permission denied"):
        data.load_cifar10(tmp_path / "c")
    assert len(list(user_cache.glob("c-*.npz"))) == 1
    monkeypatch.setattr(sources, "decode", boom)
    np.testing.assert_array_equal(data.load_cifar10(tmp_path / "c").x_train, x_train)


def test_cache_false_writes_nothing(tmp_path, user_cache):
    write_pickles(tmp_path / "c")
    data.load_cifar10(tmp_path / "c", cache=False)
    assert not (tmp_path / "c" / sources.CACHE_NAME).exists() and not user_cache.exists()


# ---------------------------------------------------------------- root, download, bad input


def test_root_is_argument_then_cifar10_dir_then_repo_default(tmp_path, monkeypatch):
    from lib.common.paths import repo_root

    assert data.resolve_root() == repo_root() / "data" / "cifar10"
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "env"))
    assert data.resolve_root() == tmp_path / "env"
    assert data.resolve_root(tmp_path / "arg") == tmp_path / "arg"
    x_train, *_ = write_pickles(tmp_path / "env")
    np.testing.assert_array_equal(data.load_cifar10().x_train, x_train)


def test_a_relative_cifar10_dir_is_taken_from_the_repository_not_the_working_folder(tmp_path, monkeypatch):
    """papermill runs notebooks in notebooks/: CIFAR10_DIR=data/cifar10 must still mean <repo>/data/cifar10."""
    from lib.common.paths import repo_root

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "cifar10").mkdir(parents=True)  # a same-named folder under the cwd is not used
    monkeypatch.setenv("CIFAR10_DIR", "data/cifar10")
    assert data.resolve_root() == repo_root() / "data" / "cifar10"
    monkeypatch.setenv("CIFAR10_DIR", "~/elsewhere")  # ~ still means home, absolute paths stay as they are
    assert data.resolve_root() == data.Path("~/elsewhere").expanduser()
    assert (
        data.resolve_root("data/cifar10") == tmp_path / "data" / "cifar10"
    )  # an argument is the caller's path
    monkeypatch.setenv("CIFAR10_DIR", "no/such/folder")
    with pytest.raises(data.DataError, match="relative CIFAR10_DIR is taken against the repository root"):
        data.load_cifar10(download=False)


@pytest.mark.parametrize("download", [False, None])
def test_no_data_without_download_says_where_it_looked_and_how_to_fix(tmp_path, download):
    with pytest.raises(data.DataError) as err:
        data.load_cifar10(tmp_path / "nothing", download=download)  # None reads CIFAR10_DOWNLOAD=0 (conftest)
    message = str(err.value)
    assert str(tmp_path / "nothing") in message and "CIFAR10_DIR" in message
    assert "xz -dc" in message and "download=True" in message


def test_failed_download_is_a_data_error_keeping_the_cause(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(data.DataError, match="Network is unreachable") as err:
        data.load_cifar10(tmp_path / "nothing", download=True)
    assert isinstance(err.value.__cause__, OSError) and "CIFAR10_DIR" in str(err.value)


def test_download_is_used_when_nothing_is_found_locally(tmp_path, monkeypatch):
    import torchvision.datasets

    planted = {}

    def fake_download(root, train, download):
        assert download
        if train:
            planted["x"] = write_pickles(tmp_path / "c")[0]

    monkeypatch.setenv("CIFAR10_DOWNLOAD", "1")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_download)
    np.testing.assert_array_equal(data.load_cifar10(tmp_path / "c").x_train, planted["x"])


def truncate(path):
    path.write_bytes(path.read_bytes()[:200])


BAD_IMAGES = {  # case -> (fixture format, file to spoil, how, words the message must contain)
    "garbage": ("png", "train/cat/0001.png", lambda p: p.write_bytes(b"not an image"), "cannot decode"),
    "truncated": ("jpg", "train/dog/0002.jpg", truncate, "cannot decode"),
    "too small": ("png", "test/ship/0000.png", lambda p: Image.new("RGB", (31, 32)).save(p), "32x32"),
    "grayscale jpeg": ("jpg", "train/frog/0003.jpg", lambda p: Image.new("L", (32, 32)).save(p), "'L'"),
    "rgba png": ("png", "train/bird/0000.png", lambda p: Image.new("RGBA", (32, 32)).save(p), "'RGBA'"),
}


@pytest.mark.parametrize("case", BAD_IMAGES)
def test_bad_image_is_a_data_error_naming_the_file(tmp_path, case):
    ext, relpath, spoil, words = BAD_IMAGES[case]
    write_folders(tmp_path / "c", ext=ext)
    spoil(tmp_path / "c" / relpath)
    with pytest.raises(data.DataError, match=words) as err:
        data.load_cifar10(tmp_path / "c")
    assert str(tmp_path / "c" / relpath) in str(err.value)


def test_bad_image_is_reported_from_the_process_pool_too(tmp_path, monkeypatch):
    write_folders(tmp_path / "c")
    (tmp_path / "c" / "test" / "deer" / "0001.png").write_bytes(b"")
    monkeypatch.setattr(sources, "POOL_MIN_IMAGES", 0)
    with pytest.raises(data.DataError, match="deer/0001.png"):
        data.load_cifar10(tmp_path / "c")


def test_wrong_class_folders_list_what_was_found_and_expected(tmp_path):
    write_folders(tmp_path / "c")
    (tmp_path / "c" / "test" / "cat").rename(tmp_path / "c" / "test" / "kitten")
    with pytest.raises(data.DataError, match="kitten") as err:
        data.load_cifar10(tmp_path / "c")
    assert "'cat'" in str(err.value) and str(tmp_path / "c" / "test") in str(err.value)


def test_empty_class_folder_is_named(tmp_path):
    write_folders(tmp_path / "c")
    for image in (tmp_path / "c" / "train" / "horse").iterdir():
        image.unlink()
    with pytest.raises(data.DataError, match="holds no images") as err:
        data.load_cifar10(tmp_path / "c")
    assert str(tmp_path / "c" / "train" / "horse") in str(err.value)


def test_missing_test_folder_is_a_data_error(tmp_path):
    write_folders(tmp_path / "c")
    (tmp_path / "c" / "test").rename(tmp_path / "c" / "elsewhere")
    with pytest.raises(data.DataError, match="no test/ folder"):
        data.load_cifar10(tmp_path / "c")


def test_missing_pickle_batch_is_named(tmp_path):
    write_pickles(tmp_path / "c")
    (tmp_path / "c" / sources.PICKLE_FOLDER / "data_batch_3").unlink()
    with pytest.raises(data.DataError, match="data_batch_3"):
        data.load_cifar10(tmp_path / "c")


def test_corrupt_pickle_batch_is_named(tmp_path):
    write_pickles(tmp_path / "c")
    (tmp_path / "c" / sources.PICKLE_FOLDER / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(data.DataError, match="test_batch"):
        data.load_cifar10(tmp_path / "c")


# ---------------------------------------------------------------- splits


def tiny_cifar(n_train: int = 40, n_test: int = 10) -> data.CIFAR10:
    """A CIFAR10 of distinct random images, built in memory."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (n_train + n_test, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, n_train + n_test)
    return data.CIFAR10(
        x[:n_train], y[:n_train], x[n_train:], y[n_train:], "folder", "png", data.resolve_root()
    )


def test_fit_and_val_partition_train_deterministically():
    cifar = tiny_cifar()
    x_fit, y_fit = cifar.split("fit", val_size=8, seed=3)
    x_val, y_val = cifar.split("val", val_size=8, seed=3)
    assert len(x_fit) == 32 and len(x_val) == 8 and len(y_fit) == 32 and len(y_val) == 8
    fit, val = by_bytes(x_fit, y_fit), by_bytes(x_val, y_val)
    assert not fit.keys() & val.keys() and {**fit, **val} == by_bytes(cifar.x_train, cifar.y_train)
    np.testing.assert_array_equal(cifar.split("val", val_size=8, seed=3)[0], x_val)
    assert not np.array_equal(cifar.split("val", val_size=8, seed=4)[0], x_val)
    np.testing.assert_array_equal(cifar.split("fit", val_size=8, seed=3, limit=5)[0], x_fit[:5])


def test_train_and_test_splits_and_limits():
    cifar = tiny_cifar()
    np.testing.assert_array_equal(cifar.split("train")[0], cifar.x_train)
    np.testing.assert_array_equal(cifar.split("test", limit=4)[1], cifar.y_test[:4])
    with pytest.raises(ValueError, match="val_size"):
        cifar.split("fit", val_size=40)
    with pytest.raises(ValueError, match="val_size"):
        cifar.split("val", val_size=0)
    with pytest.raises(ValueError, match="'valid'"):
        cifar.split("valid")
    with pytest.raises(ValueError, match="limit"):
        cifar.split("train", limit=0)


# ---------------------------------------------------------------- batches


def random_images(n: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def identify(batch: torch.Tensor, x: np.ndarray) -> tuple[list[int], list[bool]]:
    """For each batch image: the index of the source image it equals exactly (/255), and whether it is mirrored."""
    plain = {img.tobytes(): i for i, img in enumerate(x)}
    mirrored = {img[:, :, ::-1].tobytes(): i for i, img in enumerate(x)}
    assert batch.dtype == torch.float32 and 0 <= batch.min() and batch.max() <= 1
    as_uint8 = (batch * 255).round().to(torch.uint8)
    np.testing.assert_array_equal(as_uint8.float() / 255, batch.numpy())  # exactly x / 255
    index, flipped = [], []
    for img in as_uint8.numpy():
        key = img.tobytes()
        assert (key in plain) != (key in mirrored)
        index.append(plain.get(key, mirrored.get(key)))
        flipped.append(key in mirrored)
    return index, flipped


def test_one_epoch_visits_every_image_once_and_flips_about_half_exactly():
    x = random_images(66)
    batches = data.InfiniteBatches(x, batch_size=8, seed=0)
    assert batches.steps_per_epoch == 8 and batches.n == 66 and batches.batch_size == 8
    seen, flips = [], []
    for batch in map(batches.batch, range(8)):
        assert batch.shape == (8, 3, 32, 32)
        index, flipped = identify(batch, x)
        seen += index
        flips += flipped
    assert len(seen) == 64 and len(set(seen)) == 64
    assert 0.3 < np.mean(flips) < 0.7


def test_no_flips_when_disabled_and_tensor_input_accepted():
    x = random_images(32)
    batches = data.InfiniteBatches(torch.from_numpy(x), batch_size=16, flip=False)
    assert not any(flip for step in range(4) for flip in identify(batches.batch(step), x)[1])
    with pytest.raises(ValueError, match="uint8"):
        data.InfiniteBatches(x.astype(np.float32), batch_size=4)


def test_seeds_reproduce_and_differ_and_epochs_reshuffle():
    x = random_images(32)
    a, b, c = (data.InfiniteBatches(x, 8, seed=s) for s in (1, 1, 2))
    assert all(torch.equal(a.batch(s), b.batch(s)) for s in range(8))
    assert not torch.equal(a.batch(0), c.batch(0))
    assert not torch.equal(a.batch(0), a.batch(a.steps_per_epoch))


def test_random_access_in_any_order_gives_the_same_batches():
    x = random_images(40)
    forward = data.InfiniteBatches(x, 8, seed=5)
    in_order = [forward.batch(step) for step in range(17)]  # crosses 3 epochs
    backward = data.InfiniteBatches(x, 8, seed=5)
    for step in reversed(
        range(17)
    ):  # a resumed run jumps straight to its step: the batch must not depend on history
        assert torch.equal(backward.batch(step), in_order[step])


def test_the_one_converter_round_trips_uint8_exactly_and_rounds_floats_to_the_nearest_level():
    x = random_images(6)
    as_float = data.to_float(x)
    assert as_float.dtype == torch.float32 and float(as_float.max()) <= 1.0
    assert np.array_equal(data.to_uint8(as_float), x)  # uint8 -> float -> uint8 is the identity
    levels = torch.tensor([0.0, 0.49 / 255, 0.51 / 255, 1.2, -0.3]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert data.to_uint8(levels)[0, 0, 0].tolist() == [0, 0, 1, 255, 0]  # nearest level; out of range clipped
    assert torch.equal(data.to_float(as_float), as_float)  # float input is taken as already in [0, 1]
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        data.to_uint8(np.zeros((2, 32, 32), np.float32))


def test_two_ranks_take_disjoint_halves_of_the_global_batch():
    x = random_images(64)
    single = data.InfiniteBatches(x, batch_size=16, seed=2)
    ranks = [data.InfiniteBatches(x, batch_size=8, seed=2, rank=r, world_size=2) for r in range(2)]
    assert ranks[0].steps_per_epoch == single.steps_per_epoch == 4
    for step in (0, 3, 5):
        parts = [r.batch(step) for r in ranks]
        assert torch.equal(torch.cat(parts), single.batch(step))
        assert not set(identify(parts[0], x)[0]) & set(identify(parts[1], x)[0])


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 33}, "batch_size"),
        ({"batch_size": 16, "world_size": 3}, "world_size"),
        ({"batch_size": 4, "rank": 2, "world_size": 2}, "rank"),
    ],
)
def test_bad_batch_settings_raise_value_errors_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        data.InfiniteBatches(random_images(32), **kwargs)


def test_eval_batch_is_fixed_unflipped_and_seeded():
    x = random_images(32)
    first = data.eval_batch(x, 10, seed=0)
    assert first.shape == (10, 3, 32, 32) and torch.equal(first, data.eval_batch(x, 10, seed=0))
    index, flipped = identify(first, x)
    assert len(set(index)) == 10 and not any(flipped)
    assert not torch.equal(first, data.eval_batch(x, 10, seed=1))
    with pytest.raises(ValueError, match="n=33"):
        data.eval_batch(x, 33)


# ---------------------------------------------------------------- data facts


def test_exact_duplicates_finds_planted_pairs_only(monkeypatch):
    a, b = random_images(20, seed=0), random_images(15, seed=1)
    b[3], b[10], b[5] = a[7], a[2], a[1]
    b[5, 0, 0, 0] ^= 1  # a near-duplicate is not a duplicate
    assert data.exact_duplicates(a, b) == [(2, 10), (7, 3)]
    assert [(i, j) for i, j in data.exact_duplicates(a, a) if i != j] == []

    class Collide:  # every image hashes alike: only the byte check separates them
        def __init__(self, *args, **kwargs):
            pass

        def digest(self):
            return b"same"

    monkeypatch.setattr(data.hashlib, "blake2b", Collide)
    assert data.exact_duplicates(a, b) == [(2, 10), (7, 3)]


def test_channel_stats_and_class_counts_match_numpy():
    x = np.random.default_rng(0).integers(0, 256, (7, 3, 5, 4), dtype=np.uint8)
    mean, std = data.channel_stats(x, chunk=3)
    np.testing.assert_allclose(mean, (x / 255).mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, (x / 255).std(axis=(0, 2, 3)), rtol=1e-10)
    np.testing.assert_array_equal(data.class_counts([0, 3, 3, 9]), [1, 0, 0, 2, 0, 0, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="labels"):
        data.class_counts([10])


# ---------------------------------------------------------------- the real copy


def test_real_cifar10_copy_has_the_expected_shape():
    root = data.resolve_root()
    if not (root / "train").is_dir() and not (root / sources.PICKLE_FOLDER).is_dir():
        pytest.skip(f"no real CIFAR-10 at {root}")
    cifar = data.load_cifar10(root, download=False)
    assert cifar.x_train.shape == (50000, 3, 32, 32) and cifar.x_test.shape == (10000, 3, 32, 32)
    assert (data.class_counts(cifar.y_train) == 5000).all() and (
        data.class_counts(cifar.y_test) == 1000
    ).all()
    if any((root / "train" / "airplane").glob("*.jpg")):
        assert cifar.image_format == "jpeg" and cifar.lossy


def test_histogram_bits_are_the_entropy_and_the_smoothed_cross_entropy_in_bits():
    uniform = np.full((3, 256), 10)
    entropy, cross = data.histogram_bits(uniform, uniform)
    np.testing.assert_allclose([entropy, cross], 8.0)  # log2(256) bits
    one_level = np.zeros((1, 256))
    one_level[0, 7] = 1_000  # a constant channel: no uncertainty in training, and a test level never seen
    seen = one_level.copy()
    entropy, cross = data.histogram_bits(one_level, seen)
    assert entropy[0] == 0.0 and cross[0] == pytest.approx(-np.log2(1001 / 1256))  # add-one smoothing
    unseen = np.zeros((1, 256))
    unseen[0, 9] = 5
    assert data.histogram_bits(one_level, unseen)[1][0] == pytest.approx(np.log2(1256))  # finite, costly
    rng = np.random.default_rng(0)
    train, test = rng.integers(1, 50, (3, 256)), rng.integers(1, 50, (3, 256))
    q = test / test.sum(axis=1, keepdims=True)
    assert (data.histogram_bits(train, test)[1] >= -(q * np.log2(q)).sum(axis=1)).all()  # Gibbs' inequality
    with pytest.raises(ValueError, match=r"\(channels, levels\)"):
        data.histogram_bits(train, test[:2])
