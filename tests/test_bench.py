"""The throughput benchmark: FLOP counting against a closed form, and a report per family."""
from __future__ import annotations

import pytest
import torch

from lib import bench


def test_flops_of_a_convolution_match_the_closed_form():
    conv = torch.nn.Conv2d(4, 8, 3, padding=1, bias=False)
    x = torch.rand(2, 4, 16, 16)
    assert bench.count_flops(lambda: conv(x)) == 2 * 2 * 4 * 8 * 9 * 16 * 16  # 2 FLOPs per multiply-add


@pytest.mark.parametrize("family, nets, extra", [("ncsn", ["unet", "refinenet"], ["--nf", "8"]),
                                                 ("vae", ["beta_vae", "iwae"], [])])
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
