"""FLOP counting for the benchmark (torch.utils.flop_counter, corrected for grouped convolutions), the table of
accelerator peaks that achieved TFLOP/s are compared against, and memory readings."""

from __future__ import annotations

import resource
from collections.abc import Callable

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

# dense bf16 tensor-core peaks in TFLOP/s (vendor datasheets; sparsity excluded), matched by a substring of the device
# name in this order. The H200 is the H100 SXM's chip with more memory. The issue quotes ~790 TFLOP/s as a practical
# H100 figure; both fractions are reported for H100-class devices.
PEAKS_BF16 = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("4090", 165.0),
)
ISSUE_PEAK_H100_CLASS = 790.0


def peak_bf16(device_name: str) -> dict:
    """{'peak_bf16_tflops', 'peak_source'} for a device name, None values when it is not in the table."""
    for key, tflops in PEAKS_BF16:
        if key in device_name:
            return {"peak_bf16_tflops": tflops, "peak_source": f"datasheet dense bf16 ({key})"}
    return {"peak_bf16_tflops": None, "peak_source": "unknown device: no peak"}


def _conv_backward_flops(
    grad_out_shape,
    x_shape,
    w_shape,
    bias,
    stride,
    padding,
    dilation,
    transposed,
    output_padding,
    groups,
    output_mask,
    out_shape=None,
    **kwargs,
) -> int:
    """torch's convolution-backward count with the weight gradient of a grouped convolution divided by `groups`:
    torch counts that term as if the convolution were dense, ~C times too much for a depthwise one (NVAE's
    decoder cells), while its input-gradient term already sees the grouped weight shape."""

    def part(grad_input: bool, grad_weight: bool) -> int:
        return flop_counter.conv_backward_flop(
            grad_out_shape,
            x_shape,
            w_shape,
            bias,
            stride,
            padding,
            dilation,
            transposed,
            output_padding,
            groups,
            [grad_input, grad_weight],
            out_val=out_shape,
            **kwargs,
        )

    return part(bool(output_mask[0]), False) + (part(False, True) // groups if output_mask[1] else 0)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of running fn() once (matmuls and convolutions, forward and any backward inside)."""
    fixes = {torch.ops.aten.convolution_backward: _conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=fixes) as counter:
        fn()
    return counter.get_total_flops()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated accelerator memory since the last reset, or the process's peak RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
