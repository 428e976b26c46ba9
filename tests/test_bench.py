"""The throughput benchmark: FLOP counting against a closed form, and a report per family."""
from __future__ import annotations

import pytest
import torch

from lib import bench


def test_flops_of_a_convolution_match_the_closed_form():
    conv = torch.nn.Conv2d(4, 8, 3, padding=1, bias=False)
    x = torch.rand(2, 4, 16, 16)
    assert bench.count_flops(lambda: conv(x)) == 2 * 2 * 4 * 8 * 9 * 16 * 16  # 2 FLOPs per multiply-add


@pytest.mark.parametrize("groups", [1, 4, 8])  # dense, grouped, depthwise
def test_a_training_step_of_a_grouped_convolution_costs_three_forwards(groups):
    """Forward 2 B C_out (C_in / g) k^2 H W; the input and the weight gradients cost one forward each (torch's own
    counter counts a grouped weight gradient as dense: 8x too much for this depthwise convolution)."""
    conv = torch.nn.Conv2d(8, 8, 5, padding=2, groups=groups, bias=False)
    x = torch.rand(2, 8, 16, 16, requires_grad=True)
    forward = 2 * 2 * 8 * (8 // groups) * 25 * 16 * 16
    assert bench.count_flops(lambda: conv(x)) == forward
    assert bench.count_flops(lambda: conv(x).sum().backward()) == 3 * forward


@pytest.mark.parametrize("family, nets, extra", [("ncsn", ["unet", "refinenet"], ["--nf", "8"]),
                                                 ("vae", ["beta_vae", "iwae"], []),
                                                 ("nvae", ["nvae"], ["--nf", "8"])])
def test_each_family_reports_every_net(family, nets, extra, capsys):
    report = bench.main([family, "--device", "cpu", "--batch", "2", "--sample_batch", "2", "--steps", "1",
                         "--warmup", "0", *extra])
    assert [r["net"] for r in report["results"]] == nets
    for row in report["results"]:
        assert row["parameters"] > 0 and row["train_img_per_s"] > 0 and row["sample_evaluations_per_s"] > 0
        assert row["gflop_per_image_train_step"] > row["gflop_per_evaluation"] > 0  # backward costs more
        assert row["train_tflop_per_s"] == pytest.approx(
            row["gflop_per_image_train_step"] * row["train_img_per_s"] / 1e3, rel=0.01, abs=1e-3)
    assert '"results"' in capsys.readouterr().out
