"""Verdicts of lib.findings: every adjective follows from the numbers, and too few points conclude nothing."""

import pytest

from lib.workbook import findings


@pytest.mark.parametrize(
    "values, verdict",
    [
        ([3.0, 2.0, 1.0], "falls at every step"),
        ([1.0, 2.0, 3.0], "rises at every step"),
        ([2.0, 2.0], "does not change"),
        ([1.0, 3.0, 2.0], "is mixed (rises at 1 of 2 steps, falls at 1)"),
        ([9.9], "cannot be judged from 1 point"),
    ],
)
def test_steps_verdict_names_the_direction_of_every_step(values, verdict):
    assert findings.steps_verdict(values) == verdict


def test_one_beta_concludes_nothing_about_a_trend():
    sentence = findings.trend_sentence("the KL", "beta", [4.0], [12.3])
    assert "nothing can be concluded" in sentence and "monoton" not in sentence and "falls" not in sentence


def test_trend_sentence_orders_by_the_setting():
    assert "falls at every step" in findings.trend_sentence("KL", "beta", [4.0, 0.5, 1.0], [1.0, 9.0, 5.0])


def test_rate_distortion_needs_two_points_and_says_when_distortion_rises():
    assert "nothing can be concluded" in findings.rate_distortion_verdict([5.0], [9.9])
    rising = findings.rate_distortion_verdict([1.0, 2.0, 3.0], [10.0, 11.0, 12.0])
    assert "rises at every step" in rising and "NOT a trade-off" in rising
    assert "falls at every step" in findings.rate_distortion_verdict([3.0, 1.0], [8.0, 10.0])


def test_budget_spread_reports_epochs_and_warns_on_uneven_steps():
    even = findings.budget_spread([{"model": "a", "steps": 100}, {"model": "b", "steps": 110}], 3200, 32)
    assert "a: 100 steps = 1.00 epochs" in even and "WARNING" not in even
    uneven = findings.budget_spread([{"model": "a", "steps": 300}, {"model": "b", "steps": 100}], 3200, 32)
    assert "WARNING" in uneven and "3.0x" in uneven
    one = findings.budget_spread([{"model": "a", "steps": 1}], 512, 32)
    assert "a: 1 step = 0.06 epochs" in one and "1 steps" not in one


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


def test_overridden_parameters_names_only_those_set_and_replaced():
    note = findings.overridden_parameters({"MAX_MINUTES": (30.0, 0.0), "LR": (None, 1e-3), "STEPS": (40, 40)})
    assert note.startswith("smoke profile: MAX_MINUTES = 30.0 replaced by 0.0") and "LR" not in note
    assert "STEPS" not in note and findings.overridden_parameters({"LR": (None, 1e-3)}) == ""


def test_a_claim_of_growth_does_not_hold_when_nothing_changes():
    assert findings.trend_verdict([1, 5, 50], [0, 0, 0]) == "does not hold (no change at any k)"
    assert findings.trend_verdict([1, 5, 50], [1, 2, 2]).startswith("holds only weakly")


def test_equal_epochs_note_says_when_a_cap_or_an_old_plan_broke_equal_epochs():
    rows = [{"model": "IWAE k=1", "steps": 16}, {"model": "IWAE k=50", "steps": 16}]
    assert findings.equal_epochs_note(rows, 16, 1.0, 10.0) == "every model ran the planned 16 steps (1 epoch)"
    one = [{"model": "IWAE k=1", "steps": 1}]
    assert findings.equal_epochs_note(one, 1, 0.5, 0.0) == "every model ran the planned 1 step (0.5 epochs)"
    rows[1]["steps"] = 12
    rows.append({"model": "VAE k=1", "steps": 20})
    note = findings.equal_epochs_note(rows, 16, 1.0, 10.0)
    assert note.startswith(
        "the epochs were NOT equal (IWAE k=50 stopped early at step 12; VAE k=1 was loaded at"
    )


def test_same_k_check_compares_only_the_ks_both_objectives_trained():
    rows = [
        {"model": "VAE k=1", "k": 1, "bpd_k": 5.0},
        {"model": "IWAE k=5", "k": 5, "bpd_k": 4.8},
        {"model": "IWAE k=1", "k": 1, "bpd_k": 5.25},
    ]
    assert findings.same_k_check(rows) == (
        "Check: at equal k the VAE and IWAE objectives (k=1) differ by 0.2500 bits/dim (at k = 1 they are the same "
        "objective)."
    )
    assert "no k was trained under both" in findings.same_k_check(rows[1:])


def test_the_best_likelihood_says_whether_the_images_can_rank_the_runner_up():
    close = [0.0, 0.02, -0.02, 0.01, -0.01, 0.0]  # per-image differences that average 0: no ranking
    a = {"bpd_k": 7.00, "bpd_k_se": 0.05, "bpd_k_per_image": [7.0 + d for d in close], "beta": 1.0}
    b = {
        "bpd_k": 7.001,
        "bpd_k_se": 0.05,
        "bpd_k_per_image": [7.0 + 2 * d + 0.001 for d in close],
        "beta": 2.0,
    }
    text = findings.best_likelihood([b, a], lambda r: f"beta={r['beta']:g}", 500)
    assert text.startswith("the best test likelihood is at beta=1 (7.0000 ± 0.0500 bits/dim by L_500 on 6")
    assert "within twice its paired standard error" in text and "cannot rank" in text
    far = dict(b, bpd_k=7.5, bpd_k_per_image=[7.5 + d for d in close])  # 0.5 behind on every image
    assert "beyond twice its paired standard error" in findings.best_likelihood([a, far], str, 500)
    assert findings.best_likelihood([a], str, 500).endswith("nothing to compare it with")


def test_the_likelihood_standard_error_is_the_spread_of_per_image_bounds_over_root_n(monkeypatch):
    import torch

    from lib.metrics import likelihood

    class Fixed(torch.nn.Module):  # log w = -c_i for image i, whatever z: L_k = -c_i exactly
        def log_weights(self, x, k):
            return (-x.flatten(1).sum(1)).expand(k, -1), None

    monkeypatch.setattr(
        likelihood, "importance_log_likelihood", lambda m, xb, k, chunk: m.log_weights(xb, 1)[0][0]
    )
    x = (torch.tensor([0.0, 1.0, 2.0, 3.0]) / 3072).view(4, 1, 1, 1).expand(4, 3, 32, 32).contiguous()
    out = likelihood.evaluate_likelihood(Fixed(), x * 3072 / 100, k=4, batch_size=2, k_chunk=2)
    per_image = torch.tensor(out["bpd_per_image"], dtype=torch.float64)
    assert len(per_image) == 4 and per_image.std() > 0
    assert out["bpd_se"] == pytest.approx(float(per_image.std() / 2), rel=1e-6)
    assert out["bpd"] == pytest.approx(float(per_image.mean()), rel=1e-9)
