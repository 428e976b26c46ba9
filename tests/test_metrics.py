"""Sample-quality metrics: Fréchet distance, fd_c10 with a tiny classifier, precision/recall, Inception weights
errors, the classifier's loop and sample banks (CPU, seconds)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lib import metrics
from lib.data import load_cifar10
from lib.metrics.classifier import (
    CLASSIFIER_TINY,
    accuracy,
    augment,
    classifier_step,
    ensure_classifier,
    load_classifier,
)
from lib.nets.classifier import ResNetC10


def random_spd(rng, n):
    a = rng.normal(size=(n, n))
    return a @ a.T + 0.1 * np.eye(n)


def test_frechet_distance_of_identical_statistics_is_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=6), random_spd(rng, 6)
    assert metrics.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = ((mu1 - mu2) ** 2).sum() + (
        (np.sqrt(a) - np.sqrt(b)) ** 2
    ).sum()  # commuting: sum (sqrt a - sqrt b)^2
    assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_non_commuting_2x2_matches_trace_identity():
    s1, s2 = np.array([[2.0, 0.7], [0.7, 1.0]]), np.array([[1.0, -0.4], [-0.4, 3.0]])
    assert not np.allclose(s1 @ s2, s2 @ s1)
    m = s1 @ s2  # 2x2 with positive eigenvalues: (Tr sqrt M)^2 = Tr M + 2 sqrt(det M)
    tr_sqrt = np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
    expected = 1.0 + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert metrics.frechet_distance([0, 0], s1, [1, 0], s2) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_is_symmetric_and_matches_eigvals_of_product():
    rng = np.random.default_rng(1)
    mu1, mu2, s1, s2 = rng.normal(size=8), rng.normal(size=8), random_spd(rng, 8), random_spd(rng, 8)
    d12, d21 = metrics.frechet_distance(mu1, s1, mu2, s2), metrics.frechet_distance(mu2, s2, mu1, s1)
    assert d12 == pytest.approx(d21, rel=1e-9)
    tr_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()  # independent route: eigenvalues of S1 S2
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2) - 2 * tr_sqrt
    assert d12 == pytest.approx(expected, rel=1e-8)


def test_precision_recall_identical_sets_are_one_disjoint_sets_drop():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 5))
    assert metrics.precision_recall(real, real.copy()) == pytest.approx((1.0, 1.0))
    precision, recall = metrics.precision_recall(real, real + 100.0)
    assert precision == 0.0 and recall == 0.0


def test_precision_recall_narrow_fakes_are_precise_but_miss_modes():
    """Fakes from a narrow core of the real distribution lie on the real manifold (high precision) but cover
    little of it (low recall); the order of the returned pair and of the arguments matters."""
    rng = np.random.default_rng(0)
    real = rng.normal(size=(500, 2))
    fake = 0.2 * rng.normal(size=(500, 2))  # a narrow subset of where the real samples lie
    precision, recall = metrics.precision_recall(real, fake)
    assert precision > 0.9 and recall < 0.4 and precision - recall > 0.5
    assert metrics.precision_recall(fake, real) == pytest.approx(
        (recall, precision)
    )  # roles swap with the sets


@pytest.fixture
def tiny_classifier(tiny_cifar):
    cfg = dataclasses.replace(CLASSIFIER_TINY, epochs=1, n_train=None, n_test=None, batch_size=32, width=4)
    return ensure_classifier(load_cifar10(), cfg=cfg, smoke=True, log=None)


def test_classifier_features_and_storage(tiny_classifier, isolated_outputs):
    assert (isolated_outputs / "smoke/classifier/classifier.pt").is_file()
    x_test, y_test = load_cifar10().split("test")
    recomputed = accuracy(
        tiny_classifier.net, x_test, y_test
    )  # the stored figure is the test split's accuracy
    assert tiny_classifier.test_accuracy == pytest.approx(recomputed)
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    features = tiny_classifier.features(
        images, batch_size=2
    )  # batched like the full set, one image at a time here
    with torch.no_grad():
        direct = tiny_classifier.net.eval().features(torch.as_tensor(images).float() / 255).double().numpy()
    assert features.shape == (5, 16) and features.dtype == np.float64
    np.testing.assert_allclose(features, direct, rtol=1e-5, atol=1e-6)
    again = load_classifier(smoke=True)
    assert again.weights_sha256 == tiny_classifier.weights_sha256


def test_fd_c10_noised_exceeds_real(tiny_classifier, isolated_outputs):
    cifar = load_cifar10()
    real = cifar.split("train")[0]
    same = metrics.fd_c10(real, "train", classifier=tiny_classifier, cifar=cifar)
    noised = np.clip(real.astype(np.float32) + np.random.default_rng(0).normal(0, 120, real.shape), 0, 255)
    far = metrics.fd_c10(noised.astype(np.uint8), "train", classifier=tiny_classifier, cifar=cifar)
    assert same.fd == pytest.approx(0, abs=1e-6) and far.fd > same.fd + 1e-3
    assert same.classifier_accuracy == tiny_classifier.test_accuracy and "classifier test accuracy" in str(
        far
    )
    assert list((isolated_outputs / "cache/fd_c10").glob("*.npz"))  # reference cache written


def test_fd_c10_smoke_keeps_the_reference_cache_under_smoke(tiny_classifier, isolated_outputs):
    cifar = load_cifar10()
    metrics.fd_c10(cifar.split("test")[0], "train", classifier=tiny_classifier, cifar=cifar, smoke=True)
    assert list((isolated_outputs / "smoke/cache/fd_c10").glob("*.npz"))
    assert not (isolated_outputs / "runs").exists()  # $WORKBOOK_SMOKE is unset here: smoke=True alone decides


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_classifier_step_lowers_the_loss_on_a_tiny_batch(amp):
    torch.manual_seed(0)
    net = ResNetC10(width=4, n_blocks=1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    losses = [classifier_step(net, optimizer, x, y, amp) for _ in range(25)]
    assert losses[-1] < 0.7 * losses[0]
    assert augment(x, torch.Generator().manual_seed(0)).shape == x.shape


def test_classifier_precision_auto_follows_the_device_and_bad_amp_is_refused(monkeypatch):
    from lib.common import accelerator
    from lib.metrics.classifier import ClassifierConfig, classifier_precision

    monkeypatch.setattr(accelerator, "cpu_has_native_bf16", lambda: True)
    assert classifier_precision("auto", "cpu").amp == "bf16"
    monkeypatch.setattr(accelerator, "cpu_has_native_bf16", lambda: False)
    assert (
        classifier_precision("auto", "cpu").amp == "off" and classifier_precision("bf16", "cpu").amp == "bf16"
    )
    with pytest.raises(ValueError, match="amp must be auto, bf16 or off"):
        ClassifierConfig(amp="fp16")


# --- bounds of one model on the same images and draws ------------------------------------------------------------


def _tiny_vae():
    from lib.models import MODELS

    torch.manual_seed(0)
    return MODELS["iwae"].build(MODELS["iwae"].presets["tiny"][0]).eval()


def _tiny_nvae():
    from lib.models import MODELS

    torch.manual_seed(0)
    return MODELS["nvae"].build(MODELS["nvae"].presets["tiny"][0]).eval()


@pytest.mark.parametrize("family", ["vae", "nvae"])
def test_l_k_is_at_least_the_elbo_image_by_image_on_the_same_draws(family):
    """The ELBO is the mean of the log-weights and L_k their log-mean-exp, so L_k >= ELBO for every image (Jensen),
    not only on average: both bounds of a model come from the same images and the same posterior draws."""
    x = (torch.rand(6, 3, 32, 32) * 255).to(torch.uint8)
    torch.manual_seed(1)
    if family == "vae":
        out = metrics.evaluate_likelihood(_tiny_vae(), x, k=16, batch_size=3, k_chunk=5)
        per_bound = -torch.tensor(out["bpd_per_image"])
    else:
        out = metrics.hierarchical_bounds(_tiny_nvae(), x, k=16, k_chunk=5, batch_size=3)
        per_bound = -torch.tensor(out["bpd_per_image"])
    assert out["bpd_gap"] >= 0 and out["bpd_elbo"] >= (out.get("bpd") or out["bpd_iw"])
    assert out["bpd_gap"] == pytest.approx(out["bpd_elbo"] - (out.get("bpd") or out["bpd_iw"]), abs=1e-9)
    assert torch.isfinite(per_bound).all() and out["bpd_gap_se"] > 0


def test_at_k_1_the_bound_is_the_elbo():
    x = (torch.rand(4, 3, 32, 32) * 255).to(torch.uint8)
    out = metrics.evaluate_likelihood(_tiny_vae(), x, k=1, batch_size=4, k_chunk=1)
    assert out["bpd"] == pytest.approx(out["bpd_elbo"], abs=1e-12) and out["bpd_gap"] == pytest.approx(
        0, abs=1e-12
    )


def test_bound_numbers_gap_and_its_paired_standard_error_have_known_values():
    """A synthetic pair with a known per-image gap: the paired standard error is the gaps' sd / sqrt(n), far
    smaller than either bound's own spread over the images."""
    n = 400
    per_elbo = torch.linspace(-8000, -6000, n, dtype=torch.float64)  # a wide spread over the images
    gap_nats = 2.0 + 0.5 * torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = metrics.bound_numbers(per_elbo + gap_nats, per_elbo, k=50)
    to_bpd = 1 / (3072 * np.log(2))
    assert out["bpd_gap"] == pytest.approx(float(gap_nats.mean()) * to_bpd)
    assert out["bpd_gap_se"] == pytest.approx(float(gap_nats.std()) / n**0.5 * to_bpd)
    assert out["bpd_gap_se"] < 0.01 * out["bpd_se"] and out["n_images"] == n


def test_the_floor_at_n_of_a_gaussian_matches_its_known_small_sample_bias():
    """n draws of a d-dimensional standard Gaussian against its exact statistics: E[FD] ~ d/n (the mean) +
    d(d+1)/(4(n-1)) (the covariance), so the floor falls with n; against a Gaussian shifted by m it sits near
    ||m||^2 plus that bias."""
    d, rng = 4, np.random.default_rng(0)
    real = rng.normal(size=(20_000, d))
    exact = (np.zeros(d), np.eye(d))

    def fd_to(mu, cov):
        return lambda x, _: metrics.frechet_distance(*metrics.feature_stats(x), mu, cov)

    for n in (100, 400):
        floor = metrics.distance_floor(fd_to(*exact), real, None, n, repeats=200, seed=1)
        expected = d / n + d * (d + 1) / (4 * (n - 1))
        assert floor["mean"] == pytest.approx(expected, rel=0.2) and floor["sd"] > 0 and floor["n"] == n
    shifted = metrics.distance_floor(fd_to(np.full(d, 0.5), np.eye(d)), real, None, 400, repeats=50)
    assert shifted["mean"] == pytest.approx(d * 0.25 + d / 400 + d * (d + 1) / (4 * 399), rel=0.1)
    with pytest.raises(ValueError, match="needs n real images"):
        metrics.distance_floor(fd_to(*exact), real[:10], None, 20)


def test_the_kl_per_unit_sums_to_the_closed_form_kl():
    x = (torch.rand(5, 3, 32, 32) * 255).to(torch.uint8)
    model = _tiny_vae()
    per_unit = metrics.kl_per_unit(model, x, batch_size=2)
    with torch.no_grad():
        whole = model.posterior(x.float() / 255).kl_standard_normal().mean()
    assert per_unit.shape == (model.posterior(x[:1].float() / 255).mu.shape[1],) and (per_unit >= 0).all()
    assert float(per_unit.sum()) == pytest.approx(float(whole), rel=1e-5)
