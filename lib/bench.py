"""Throughput benchmark: `python -m lib.bench MODEL [--device D] [--batch 128] [--sample_batch 1000] [--steps 20]
[--warmup 5] [--amp auto|bf16|off] [--channels_last] [--compile] [--nets a,b] [--nf N]` prints one JSON object.

Per network: parameters, GFLOP per image of one training step (forward + backward, counted by
torch.utils.flop_counter) and of one sampling evaluation (forward), training img/s and achieved TFLOP/s,
sampling network evaluations per second (images x evaluations), peak memory, device and settings.
`BENCHES` maps a model family to a function returning its (label, model, evaluate) triples, so other
families plug in with one entry.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import resource
import time
from dataclasses import replace
from typing import Callable

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from .runs import describe_device, pick_device

Evaluate = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]  # one sampling network evaluation


def ncsn_benches(args) -> list[tuple[str, torch.nn.Module, Evaluate]]:
    """The U-Net (reference preset) and the RefineNet (paper preset), optionally at another width."""
    from .models.ncsn import NCSN, NCSN_PAPER, NCSN_REFERENCE
    configs = {"unet": NCSN_REFERENCE, "refinenet": NCSN_PAPER}
    out = []
    for name in args.nets.split(","):
        cfg = replace(configs[name], nf=args.nf) if args.nf else configs[name]
        out.append((name, NCSN(cfg), lambda model, x: model.score(x, model.cfg.n_sigmas - 1)))
    return out


def vae_benches(args) -> list[tuple[str, torch.nn.Module, Evaluate]]:
    """Beta-VAE and IWAE at their default presets; one sampling evaluation is one decoder pass from the prior."""
    from .models import MODELS
    out = []
    for name in args.nets.split(","):
        model = MODELS[name].build(MODELS[name].presets["default"][0])
        out.append((name, model, lambda m, x: m.decode(torch.randn(len(x), m.latent_dim, device=x.device))))
    return out


def nvae_benches(args) -> list[tuple[str, torch.nn.Module, Evaluate]]:
    """NVAE at its reference preset (2 scales, 64 channels, 3 groups per scale; --nf sets the channels); one
    sampling evaluation is one top-down decoder pass from the prior."""
    from .models import MODELS
    cfg = MODELS["nvae"].presets["reference"][0]
    cfg = replace(cfg, channels=args.nf) if args.nf else cfg
    return [("nvae", MODELS["nvae"].build(cfg), lambda m, x: m.net.top_down(n=len(x))[0])]


BENCHES: dict[str, Callable] = {"ncsn": ncsn_benches, "vae": vae_benches, "nvae": nvae_benches}
DEFAULT_NETS = {"ncsn": "unet,refinenet", "vae": "beta_vae,iwae", "nvae": "nvae"}
COMPILED_PARTS = ("net", "encoder", "decoder")  # submodules torch.compile wraps when --compile is given
REFERENCE = {  # the figures each family's issue quotes for the reference implementations
    "ncsn": "NCSNv2 reference code on one H100 (RefineNet ~30M params, fp32, ~59 GFLOP/image/step): "
            "~1.5k img/s training (~90 TFLOP/s), ~4.4k image evaluations/s sampling",
    "nvae": "official NVAE code on one H100: CIFAR-10 config (131M params, batch 32, fp16) ~28 img/s "
            "(~5.6 TFLOP/s, 202 GFLOP/image/step); small config (2 scales, 64 channels, 3 groups/scale, "
            "16.7M params, batch 64) ~250 img/s (12.6 GFLOP/image/step)",
}


def autocast(device: torch.device, amp: str):
    """bf16 autocast for amp=bf16 (or auto on CUDA), else nothing."""
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                         output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:
    """torch's convolution-backward count with the weight gradient of a grouped convolution divided by `groups`:
    torch counts that term as if the convolution were dense, ~C times too much for a depthwise one (NVAE's
    decoder cells), while its input-gradient term already sees the grouped weight shape."""
    def part(grad_input: bool, grad_weight: bool) -> int:
        return flop_counter.conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation,
                                               transposed, output_padding, groups, [grad_input, grad_weight],
                                               out_val=out_shape, **kwargs)  # torch's registered, shape-wrapped
    return part(bool(output_mask[0]), False) + (part(False, True) // groups if output_mask[1] else 0)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of running fn() once (matmuls and convolutions, forward and any backward inside)."""
    fixes = {torch.ops.aten.convolution_backward: _conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=fixes) as counter:
        fn()
    return counter.get_total_flops()


def _images(n: int, device, channels_last: bool) -> torch.Tensor:
    x = torch.rand(n, 3, 32, 32, device=device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated accelerator memory since the last reset, or the process's peak RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_training(model, args, device) -> float:
    """Training images per second: Adam steps on random batches (after warm-up, including compilation)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = _images(args.batch, device, args.channels_last)

    def step(i):
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, args.amp):
            loss = model.loss(x, i)[0]
        loss.backward()
        optimizer.step()

    for i in range(args.warmup):
        step(i)
    _sync(device)
    start = time.perf_counter()
    for i in range(args.steps):
        step(i)
    _sync(device)
    return args.batch * args.steps / (time.perf_counter() - start)


@torch.no_grad()
def time_sampling(model, evaluate: Evaluate, args, device) -> float:
    """Network evaluations per second during sampling, counted per image (batch x evaluations / s)."""
    x = _images(args.sample_batch, device, args.channels_last)
    with autocast(device, args.amp):
        for _ in range(args.warmup):
            evaluate(model, x)
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            evaluate(model, x)
        _sync(device)
    return args.sample_batch * args.steps / (time.perf_counter() - start)


def bench_one(label: str, model, evaluate: Evaluate, args, device) -> dict:
    """All numbers for one network."""
    model = model.to(device, memory_format=torch.channels_last if args.channels_last else torch.preserve_format)
    x2 = _images(2, device, args.channels_last)
    train_gflop = count_flops(lambda: model.loss(x2, 0)[0].backward()) / 2 / 1e9
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        eval_gflop = count_flops(lambda: evaluate(model, x2)) / 2 / 1e9
    if args.compile:
        for part in COMPILED_PARTS:
            if hasattr(model, part):
                setattr(model, part, torch.compile(getattr(model, part)))
    _reset_peak(device)
    img_per_s = time_training(model.train(), args, device)
    train_peak = peak_memory_mb(device)
    _reset_peak(device)
    evals_per_s = time_sampling(model.eval(), evaluate, args, device)
    return {"net": label, "parameters": sum(p.numel() for p in model.parameters()),
            "gflop_per_image_train_step": round(train_gflop, 3), "gflop_per_evaluation": round(eval_gflop, 3),
            "train_img_per_s": round(img_per_s, 1), "train_tflop_per_s": round(train_gflop * img_per_s / 1e3, 3),
            "sample_evaluations_per_s": round(evals_per_s, 1),
            "sample_tflop_per_s": round(eval_gflop * evals_per_s / 1e3, 3),
            "peak_memory_train_mb": round(train_peak, 1), "peak_memory_sample_mb": round(peak_memory_mb(device), 1)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lib.bench", description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(BENCHES))
    parser.add_argument("--device", default=None, help="cuda | mps | cpu (default: the best available)")
    parser.add_argument("--batch", type=int, default=128, help="training batch size")
    parser.add_argument("--sample_batch", type=int, default=1000, help="batch size of sampling evaluations")
    parser.add_argument("--steps", type=int, default=20, help="timed iterations (after warm-up)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first (compilation happens here)")
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"), help="auto: bf16 on CUDA only")
    parser.add_argument("--channels_last", action="store_true", help="NHWC memory format for weights and inputs")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--nets", default=None, help=f"comma-separated networks of the family (default: {DEFAULT_NETS})")
    parser.add_argument("--nf", type=int, default=0, help="override the base width (0: the preset's)")
    args = parser.parse_args(argv)
    args.nets = args.nets or DEFAULT_NETS[args.model]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = pick_device(args.device)
    torch.manual_seed(0)
    results = [bench_one(label, model, evaluate, args, device) for label, model, evaluate in BENCHES[args.model](args)]
    report = {"model": args.model, "device": describe_device(device), "torch": torch.__version__,
              "settings": {k: v for k, v in vars(args).items() if k != "model"}, "results": results,
              "reference": REFERENCE.get(args.model, "")}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
