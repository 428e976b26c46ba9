"""What notebooks 03 and 04 read from lib for issue 36: the spread of the normalised importance weights behind L_k
(known answers), a second training seed recorded without a sample bank, and a zero difference measured without
spread, which has nothing to decide."""

from __future__ import annotations

import json
import math
import types

import torch

from lib import metrics
from lib.models import MODELS
from lib.workbook import budget, findings, results
from tests.test_experiments import _Copy, tiny_beta_vae


def test_the_weight_spread_of_equal_weights_and_of_one_dominant_weight():
    k = 8
    equal = torch.zeros(k, 3)  # every log weight the same: w_i = 1/k, the effective sample size is k
    w_max, ess = metrics.weight_spread(equal)
    assert torch.allclose(w_max, torch.full((3,), 1 / k)) and torch.allclose(ess, torch.full((3,), float(k)))
    dominant = torch.full((k, 2), -1e4)
    dominant[3] = 0.0  # one weight dwarfs the others: w_max = 1, the effective sample size is 1
    w_max, ess = metrics.weight_spread(dominant)
    assert torch.allclose(w_max, torch.ones(2)) and torch.allclose(ess, torch.ones(2))
    two = torch.tensor([[0.0], [math.log(3.0)]])  # weights 1 and 3: normalised 1/4, 3/4
    w_max, ess = metrics.weight_spread(two)
    assert math.isclose(w_max.item(), 0.75, rel_tol=1e-6)
    assert math.isclose(ess.item(), 1.6, rel_tol=1e-6)  # 1 / (1/16 + 9/16)


def test_evaluate_likelihood_reports_the_weight_spread_of_its_own_draws():
    torch.manual_seed(0)
    model = MODELS["beta_vae"].build(MODELS["beta_vae"].presets["tiny"][0]).eval()
    numbers = metrics.evaluate_likelihood(model, torch.rand(4, 3, 32, 32), k=6, batch_size=2, k_chunk=4)
    assert 1 / 6 <= numbers["weight_max"] <= 1 and 1 <= numbers["ess"] <= 6
    assert numbers["weight_max_se"] >= 0 and numbers["ess_se"] >= 0


def test_a_second_seed_is_recorded_without_a_bank(images, isolated_outputs):
    cfg, train_cfg = tiny_beta_vae()
    fitted = budget.fit(
        "beta_vae", cfg, train_cfg, images, isolated_outputs / "smoke" / "runs" / "bv-s1", "cpu"
    )
    S = types.SimpleNamespace(n_bank=8, smoke=True, profile="smoke")
    path = results.record_fitted(
        fitted, "beta_vae", S, _Copy(), "cpu", {"bpd_k": 5.0}, 1, n_bank=0, training_seed=1
    )
    record = json.loads(path.read_text())
    assert (
        record["sample_bank"] is None and record["training_seed"] == 1 and record["metrics"]["bpd_k"] == 5.0
    )
    assert results.load_sample_bank("bv-s1", smoke=True) is None


def test_a_zero_difference_without_spread_is_undecided_and_a_real_one_decided():
    assert findings.stated("units", 0.0, 0.0, findings.SEEDS, unit="units").endswith("undecided (0.0 SE)")
    assert findings.stated("units", 2.0, 0.0, findings.SEEDS, unit="units").endswith("decided (inf SE)")
