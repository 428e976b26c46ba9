"""Verdicts of lib.findings: every adjective follows from the numbers, and too few points conclude nothing."""

import pytest

from lib.workbook import findings


def test_counted_is_plural_unless_the_number_reads_one():
    assert [findings.counted(n, "step") for n in (0, 1, 2, 1_600)] == [
        "0 steps",
        "1 step",
        "2 steps",
        "1,600 steps",
    ]
    assert (
        findings.counted(1.0, "epoch", "g") == "1 epoch"
        and findings.counted(0.5, "epoch", "g") == "0.5 epochs"
    )
    assert findings.counted(1.0, "epoch", ".2f") == "1.00 epochs"  # a measured amount stays plural


def test_tables_carry_the_smoke_line_only_in_smoke_mode():
    rows, columns = [{"beta": 1.0}], {"beta": "g"}
    assert findings.SMOKE_NOTE in findings.format_table(rows, columns, smoke=True)
    assert findings.SMOKE_NOTE not in findings.format_table(rows, columns, smoke=False)


def test_a_seed_gap_has_the_standard_error_of_two_independent_means():
    gap, se = findings.seed_gap([1.0, 2.0, 3.0], [0.0, 0.0, 3.0])  # variances 1 and 3, three seeds each
    assert gap == pytest.approx(1.0) and se == pytest.approx((1 / 3 + 3 / 3) ** 0.5)
    assert findings.seed_gap([1.0], [0.5])[1] != findings.seed_gap([1.0], [0.5])[1]  # nan: one seed each


def test_a_difference_is_stated_with_its_error_and_decided_only_beyond_two_of_them():
    decided = findings.stated("beta=1 vs beta=0.5", 0.0039, 0.0005, findings.PAIRED)
    assert decided == (
        "beta=1 vs beta=0.5: +0.0039 ± 0.0005 bits/dim (SE paired over the same test images), decided (7.8 SE)"
    )
    assert "undecided (1.5 SE)" in findings.stated("k=5 vs k=1", -0.003, 0.002, findings.SEEDS)
    assert "not decidable" in findings.stated("k=5 vs k=1", -0.003, float("nan"), findings.SEEDS)


def test_the_likelihood_standard_error_is_the_spread_of_per_image_bounds_over_root_n(monkeypatch):
    import torch

    from lib.metrics import likelihood

    class Fixed(torch.nn.Module):  # log w = -c_i for image i, whatever z: L_k = -c_i exactly
        def log_weights(self, x, k):
            return (-x.flatten(1).sum(1)).expand(k, -1), None

    monkeypatch.setattr(likelihood, "importance_log_weights", lambda m, xb, k, chunk: m.log_weights(xb, k)[0])
    x = (torch.tensor([0.0, 1.0, 2.0, 3.0]) / 3072).view(4, 1, 1, 1).expand(4, 3, 32, 32).contiguous()
    out = likelihood.evaluate_likelihood(Fixed(), x * 3072 / 100, k=4, batch_size=2, k_chunk=2)
    per_image = torch.tensor(out["bpd_per_image"], dtype=torch.float64)
    assert len(per_image) == 4 and per_image.std() > 0
    assert out["bpd_se"] == pytest.approx(float(per_image.std() / 2), rel=1e-6)
    assert out["bpd"] == pytest.approx(float(per_image.mean()), rel=1e-9)
