"""lib.metrics.distance_floors: several distances of n real images over the same random subsets, with known answers
on synthetic Gaussian features (what notebook 06 reads every model beside)."""

from __future__ import annotations

import numpy as np
import pytest

from lib import metrics


def _gaussian_distances(d: int):
    """The Fréchet distance to the exact N(0, I_d) and the squared distance of the subset's mean to 0."""
    exact = (np.zeros(d), np.eye(d))

    def distances(x, _reference):
        mu, cov = metrics.feature_stats(x)
        return {"fd": metrics.frechet_distance(mu, cov, *exact), "mean_sq": float((mu**2).sum())}

    return distances


def test_floors_of_a_standard_gaussian_match_the_known_small_sample_bias():
    """n draws of N(0, I_d): E||mean||^2 = d/n exactly, E[FD] ~ d/n + d(d+1)/(4(n-1)); both from the same subsets."""
    d, n = 4, 200
    real = np.random.default_rng(0).normal(size=(50_000, d))
    floors = metrics.distance_floors(_gaussian_distances(d), real, None, n, repeats=300, seed=2)
    assert set(floors) == {"fd", "mean_sq"} and all(
        f["n"] == n and len(f["values"]) == 300 for f in floors.values()
    )
    assert floors["mean_sq"]["mean"] == pytest.approx(d / n, rel=0.15)
    # ||mean||^2 is chi^2_d / n: its sd is sqrt(2d) / n
    assert floors["mean_sq"]["sd"] == pytest.approx((2 * d) ** 0.5 / n, rel=0.2)
    assert floors["fd"]["mean"] == pytest.approx(d / n + d * (d + 1) / (4 * (n - 1)), rel=0.15)
    single = metrics.distance_floor(
        lambda x, r: _gaussian_distances(d)(x, r)["fd"], real, None, n, 300, seed=2
    )
    assert single == floors["fd"]  # the one-distance floor is the same subsets' numbers


def test_a_model_shifted_by_m_sits_above_the_floor_by_about_m_squared():
    """Samples of N(m, I) against the same exact reference: FD ~ ||m||^2 + the floor's bias, many floor sds above."""
    d, n = 4, 400
    rng = np.random.default_rng(1)
    real, shifted = rng.normal(size=(20_000, d)), rng.normal(0.5, 1.0, size=(20_000, d))
    distances = _gaussian_distances(d)
    floor = metrics.distance_floors(distances, real, None, n, repeats=50)["fd"]
    model = metrics.distance_floors(distances, shifted, None, n, repeats=50)["fd"]
    assert model["mean"] - floor["mean"] == pytest.approx(d * 0.25, rel=0.1)
    assert (model["mean"] - floor["mean"]) / floor["sd"] > 10


def test_each_subset_is_measured_once_and_bad_sizes_are_refused():
    calls = []
    real = np.arange(40.0)[:, None]
    out = metrics.distance_floors(
        lambda x, _: calls.append(x) or {"a": x.mean(), "b": x.max()}, real, None, 10
    )
    # each subset drawn without replacement, each measured once
    assert len(calls) == 5 and all(len(x) == 10 and len(np.unique(x)) == 10 for x in calls)
    assert out["b"]["values"] == [float(x.max()) for x in calls]
    with pytest.raises(ValueError, match="needs n real images"):
        metrics.distance_floors(lambda x, _: {"a": 0.0}, real, None, 41)
    with pytest.raises(ValueError, match="repeats must be >= 2"):
        metrics.distance_floors(lambda x, _: {"a": 0.0}, real, None, 10, repeats=1)
