"""Layer-level timings behind the CPU fast paths: `python -m lib.bench.layers [--batch B] [--out FILE]`.

Each row times one layer's forward + backward (bf16 autocast and fp32) in PyTorch's own form and in the form the
nets use on the CPU: GemmConv2d / GemmConvTranspose2d (lib.nets.fast_layers) for the VAEs' 2x2 maps and
max_pool_5x5 (lib.nets.fast_layers) for the RefineNet's chained residual pooling. The layers are chosen by these
measurements, not by assumption; rerun it on a new CPU before trusting the thresholds there."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..common.devices import describe_device
from ..nets.fast_layers import GemmConv2d, GemmConvTranspose2d, max_pool_5x5


def _ms(fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def _forward_backward(layer, x: torch.Tensor, bf16: bool):
    def step():
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            out = layer(x)
        out.float().sum().backward()

    return step


def cases(batch: int) -> list[tuple[str, tuple, object, object]]:
    """(name, input shape, PyTorch's layer, the nets' layer) with equal parameters."""
    rows = []
    for c_in, c_out, side in ((256, 512, 4), (128, 256, 8)):
        plain = nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)
        fast = GemmConv2d(c_in, c_out, 4, stride=2, padding=1)
        fast.load_state_dict(plain.state_dict())
        rows.append((f"conv 4x4/2 {c_in}->{c_out} at {side}x{side}", (batch, c_in, side, side), plain, fast))
    for c_in, c_out, side in ((512, 256, 2), (256, 128, 4)):
        plain = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
        fast = GemmConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
        fast.load_state_dict(plain.state_dict())
        rows.append(
            (f"conv-transpose 4x4/2 {c_in}->{c_out} at {side}x{side}", (batch, c_in, side, side), plain, fast)
        )
    pool = lambda x: F.max_pool2d(x, 5, stride=1, padding=2)  # noqa: E731
    rows.append(("max-pool 5x5/1 at 32x32", (batch // 8, 128, 32, 32), pool, max_pool_5x5))
    return rows


def run(batch: int = 128, repeats: int = 5) -> dict:
    torch.manual_seed(0)
    report = {
        "device": describe_device(torch.device("cpu")),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "rows": [],
    }
    for name, shape, plain, fast in cases(batch):
        x = torch.randn(*shape, requires_grad=True)
        row = {"layer": name, "input": list(shape)}
        for precision, bf16 in (("bf16", True), ("fp32", False)):
            for label, layer in (("pytorch", plain), ("nets", fast)):
                row[f"{precision}_{label}_ms"] = round(_ms(_forward_backward(layer, x, bf16), repeats), 2)
        report["rows"].append(row)
        print(json.dumps(row), flush=True)
    return report


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m lib.bench.layers", description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128, help="images per call (the max-pool row uses batch / 8)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per cell, after two untimed ones")
    p.add_argument("--out", default=None, help="JSON file for the table")
    args = p.parse_args(argv)
    report = run(args.batch, args.repeats)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
