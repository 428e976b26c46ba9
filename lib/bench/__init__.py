"""Throughput benchmark of the real training loop and samplers: `python -m lib.bench ncsn|vae|nvae|all [options]`.

Per family and net, "plain" (fp32, eager) and "fast" (autocast as amp="auto" picks it + torch.compile + channels-last
where auto picks it + fused optimizer + cuDNN autotuning + TF32) side by side, and on request "fast_eager" (fast
without torch.compile): parameters, GFLOP per image of one training step (forward + backward,
torch.utils.flop_counter corrected for grouped convolutions) and of one sampling evaluation, training img/s and
TFLOP/s with the fraction of the device's bf16 peak, sampling evaluations/s, peak memory, host syncs per step (CUDA),
device, torch version and settings. Training is timed through lib.train's own loop step, sampling through each
model's own sampler. `all --out DIR` writes DIR/<device>.json after every row, so a cut-off run keeps what it
measured; `--tiny` rehearses everything on tiny presets (a CPU minute); `--budget_s` skips rows once spent.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

from ..common.devices import describe_device, pick_device
from .flops import ISSUE_PEAK_H100_CLASS, count_flops, peak_bf16
from .suites import REFERENCE, SUITES, Case
from .timing import mode_config, time_sampling, time_training

__all__ = ["count_flops", "main", "peak_bf16", "SUITES"]
FAMILIES = ("ncsn", "nvae", "vae")  # the order of `all`: the slowest compiles first, while budget is fresh


def measure_flops(case: Case, device: torch.device) -> dict:
    """Parameters and GFLOP per image (batch 2, fp32 eager) of a training step and of a sampling evaluation."""
    model = case.build().to(device)
    x2 = torch.rand(2, 3, 32, 32, device=device)
    train = count_flops(lambda: model.loss(x2, 0)[0].backward()) / 2 / 1e9
    with torch.no_grad():
        evaluation = count_flops(lambda: case.evaluate(model.eval(), x2)) / 2 / 1e9
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "gflop_per_image_train_step": train,
        "gflop_per_evaluation": evaluation,
    }


def measure(case: Case, mode: str, flops: dict, args, device: torch.device, peak: float | None) -> dict:
    """One row: training through the loop (unless the case has no training), then sampling, on fresh weights."""
    row = {"net": case.net, "mode": mode, **flops}
    model = case.build()
    if case.batch:
        cfg = mode_config(case.train_cfg, mode, case.batch, compile=not args.no_compile)
        row.update(batch=case.batch, **time_training(model, cfg, device, args.warmup, args.steps))
        row["train_tflop_per_s"] = flops["gflop_per_image_train_step"] * row["train_img_per_s"] / 1e3
        row["settings"] = {
            k: getattr(cfg, k)
            for k in (
                "amp",
                "compile",
                "compile_mode",
                "channels_last",
                "fused_optimizer",
                "cudnn_benchmark",
                "tf32",
                "optimizer",
            )
        }
    model = model.to(device)
    row.update(time_sampling(case.draw(model, mode, device), device, args.sample_repeats))
    row["sample_tflop_per_s"] = flops["gflop_per_evaluation"] * row["sample_evaluations_per_s"] / 1e3
    for key in ("train", "sample"):
        if peak and f"{key}_tflop_per_s" in row:
            row[f"{key}_fraction_of_peak"] = row[f"{key}_tflop_per_s"] / peak
    row["notes"] = case.notes
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def _measure_or_record(case: Case, mode: str, flops: dict, args, device: torch.device, peak) -> dict:
    """measure(), or a row naming the error, so one failing row (a compile that cannot run here, memory) does not
    end the benchmark: the next row runs."""
    try:
        return measure(case, mode, flops, args, device, peak)
    except Exception as err:  # any failure of one row; the report names it
        if device.type == "cuda":
            torch.cuda.empty_cache()
        first = (str(err).strip().splitlines() or [""])[0][:300]
        return {"net": case.net, "mode": mode, **flops, "error": f"{type(err).__name__}: {first}"}


def device_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'; a CPU is 'cpu'."""
    return "cpu" if name.startswith("cpu") else re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def header(args, device: torch.device) -> dict:
    name = describe_device(device)
    peak = peak_bf16(name)
    if "H100" in name or "H200" in name:
        peak["issue_peak_bf16_tflops"] = ISSUE_PEAK_H100_CLASS
    return {
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        **peak,
        "settings": {k: v for k, v in vars(args).items() if k not in ("family", "out")},
        "modes": {
            "plain": "fp32, eager, no channels-last, for-loop/foreach optimizer, no TF32/cuDNN autotune",
            "fast_eager": "fast without torch.compile (what the notebooks' profiles use unless they compile)",
            "fast": "autocast as amp='auto' picks it (bf16 where native, fp16 on older GPUs), torch.compile of the nets (and of the Langevin step), channels-last where auto picks it (per net), "
            "fused Adam/AdamW (Adamax: foreach), cuDNN autotune, TF32",
        },
        "reference": REFERENCE,
        "results": [],
    }


def run(args) -> dict:
    device = pick_device(args.device)
    report = header(args, device)
    out = (
        Path(args.out) / f"{device_slug(report['device'])}{'-tiny' if args.tiny else ''}.json"
        if args.out
        else None
    )
    start = time.monotonic()
    for family in FAMILIES if args.family == "all" else (args.family,):
        sizes = {key: getattr(args, key).get(family, getattr(args, key)["*"]) for key in PER_FAMILY}
        for case in SUITES[family](argparse.Namespace(**{**vars(args), **sizes})):
            flops = measure_flops(case, device)
            for mode in args.modes:
                if args.budget_s and time.monotonic() - start > args.budget_s:
                    row = {
                        "net": case.net,
                        "mode": mode,
                        **flops,
                        "skipped": f"budget of {args.budget_s}s spent",
                    }
                else:
                    row = _measure_or_record(case, mode, flops, args, device, report["peak_bf16_tflops"])
                report["results"].append({"family": family, **row})
                report["elapsed_s"] = round(time.monotonic() - start, 1)
                if out is not None:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(json.dumps(report, indent=2) + "\n")
                print(json.dumps(report["results"][-1]), flush=True)
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lib.bench", description=__doc__.splitlines()[0])
    p.add_argument("family", choices=[*sorted(SUITES), "all"])
    p.add_argument("--device", default=None, help="cuda | mps | cpu (default: the best available)")
    p.add_argument("--out", default=None, help="folder for <device>.json (default: print only)")
    p.add_argument("--tiny", action="store_true", help="tiny presets: a CPU rehearsal of the whole benchmark")
    p.add_argument(
        "--modes",
        default="plain,fast",
        help=f"comma-separated, of {', '.join(MODES)} (fast_eager: fast, no compile)",
    )
    p.add_argument("--nets", default=None, help="comma-separated nets of the family (default: all of them)")
    p.add_argument(
        "--batch",
        type=per_family,
        default="0",
        help="training batch, for every family (16) or per family (ncsn=16,nvae=32); 0: each preset's own",
    )
    p.add_argument(
        "--sample_batch", type=per_family, default="256", help="images per sampling call (as --batch)"
    )
    p.add_argument("--steps", type=int, default=15, help="timed training steps (after warm-up)")
    p.add_argument(
        "--warmup", type=int, default=3, help="untimed training steps first (compilation happens here)"
    )
    p.add_argument(
        "--sample_repeats", type=int, default=2, help="timed sampling calls (after one untimed call)"
    )
    p.add_argument("--eval_k", type=int, default=5000, help="k of the IWAE evaluation bound")
    p.add_argument("--eval_batch", type=int, default=4, help="images per IWAE evaluation call")
    p.add_argument("--nf", type=int, default=0, help="override the base width (0: the preset's)")
    p.add_argument(
        "--no_compile", action="store_true", help="fast mode without torch.compile (CPU rehearsal)"
    )
    p.add_argument(
        "--budget_s", type=float, default=0.0, help="skip the remaining rows after this many seconds"
    )
    args = p.parse_args(argv)
    args.modes = args.modes.split(",")
    if set(args.modes) - set(MODES):
        p.error(f"--modes: unknown {sorted(set(args.modes) - set(MODES))}; choose from {', '.join(MODES)}")
    args.nets = args.nets.split(",") if args.nets else None
    args.batch, args.sample_batch = {"*": 0, **args.batch}, {"*": 256, **args.sample_batch}
    if args.tiny:
        args.batch = {f: n or 8 for f, n in args.batch.items()}
        args.sample_batch = {f: min(n, 8) for f, n in args.sample_batch.items()}
        args.eval_k = min(args.eval_k, 50)
    return args


MODES = ("plain", "fast_eager", "fast")
PER_FAMILY = ("batch", "sample_batch")  # the options that take one number or one per family


def per_family(text: str) -> dict[str, int]:
    """'16' -> {'*': 16} (every family); 'ncsn=16,nvae=32' -> those families (the others keep the default)."""
    if "=" not in text:
        return {"*": int(text)}
    pairs = dict(item.split("=", 1) for item in text.split(","))
    unknown = sorted(set(pairs) - set(SUITES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown families {unknown}: use {sorted(SUITES)}")
    return {family: int(n) for family, n in pairs.items()}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(0)
    report = run(args)
    print(json.dumps({k: v for k, v in report.items() if k != "results"}, indent=2))
    return report
