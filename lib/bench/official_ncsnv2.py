"""Times the official NCSNv2 code (ermongroup/ncsnv2, a checkout you provide: nothing of it is copied here) the way
lib.bench times ours: `python -m lib.bench.official_ncsnv2 --repo PATH [--batch 16] [--out FILE]`.

One training step is the official loss (losses.dsm.anneal_dsm_score_estimation on its CIFAR-10 config: NCSNv2,
ngf 128, 232 levels), backward, Adam and its EMAHelper update, on random images, in fp32 and under plain bf16
autocast (the CPU) or the device's autocast dtype, after `--warmup` untimed steps. The FLOPs come from the same
counter as lib.bench (torch.utils.flop_counter on a batch of 2)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..common.accelerator import resolve_amp
from ..common.devices import describe_device, pick_device
from .flops import count_flops, sync


def _namespace(d: dict) -> argparse.Namespace:
    return argparse.Namespace(**{k: _namespace(v) if isinstance(v, dict) else v for k, v in d.items()})


def load(repo: Path, device: torch.device):
    """The official net, its sigmas, loss, Adam and EMA helper, from `repo` (its configs/cifar10.yml)."""
    import yaml

    if not (repo / "models" / "ncsnv2.py").is_file():
        raise FileNotFoundError(
            f"{repo} is not an ermongroup/ncsnv2 checkout (no models/ncsnv2.py): pass --repo"
        )
    sys.path.insert(0, str(repo))
    from losses.dsm import anneal_dsm_score_estimation
    from models.ema import EMAHelper
    from models.ncsnv2 import NCSNv2

    config = _namespace(yaml.safe_load((repo / "configs" / "cifar10.yml").read_text()))
    config.device = device
    torch.manual_seed(0)
    net = NCSNv2(config).to(device)
    optim = config.optim
    adam = torch.optim.Adam(net.parameters(), lr=optim.lr, betas=(optim.beta1, 0.999), eps=optim.eps)
    ema = EMAHelper(mu=config.model.ema_rate)
    ema.register(net)
    return net, anneal_dsm_score_estimation, adam, ema, config.training.anneal_power


def revision(repo: Path, given: str | None = None) -> str:
    """The official code's commit: `given`, else `git rev-parse HEAD` in `repo`, else 'unknown (not a git checkout)'."""
    if given:
        return given
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if Path(out[0]).resolve() == repo.resolve():  # not an enclosing repository's commit
            return out[1]
    except (OSError, subprocess.CalledProcessError):
        pass
    return "unknown (not a git checkout: pass --revision)"


def run(
    repo: Path, batch: int, steps: int, warmup: int, device: torch.device, rev: str | None = None
) -> dict:
    net, loss_fn, adam, ema, power = load(repo, device)
    x = torch.rand(batch, 3, 32, 32, device=device)
    gflop = count_flops(lambda: loss_fn(net, x[:2], net.sigmas, None, power).backward()) / 2 / 1e9
    net.zero_grad()
    report = {
        "device": describe_device(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "code": f"ermongroup/ncsnv2 at commit {revision(repo, rev)}",
        "batch": batch,
        "steps": steps,
        "parameters": sum(p.numel() for p in net.parameters()),
        "gflop_per_image_train_step": round(gflop, 2),
    }
    low = resolve_amp("auto", device)
    for name, dtype in (("fp32", None), (f"{low.amp} autocast", low.dtype)):

        def step(dtype=dtype):
            with torch.autocast(device.type, dtype or torch.float32, enabled=dtype is not None):
                loss = loss_fn(net, x, net.sigmas, None, power)
            adam.zero_grad()
            loss.backward()
            adam.step()
            ema.update(net)

        for _ in range(warmup):
            step()
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        img_s = batch * steps / (time.perf_counter() - start)
        report[name] = {
            "train_img_per_s": round(img_s, 3),
            "train_tflop_per_s": round(gflop * img_s / 1e3, 4),
        }
        print(json.dumps({name: report[name]}), flush=True)
    return report


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m lib.bench.official_ncsnv2", description=__doc__.splitlines()[0]
    )
    p.add_argument("--repo", required=True, help="a checkout of github.com/ermongroup/ncsnv2")
    p.add_argument(
        "--revision", default=None, help="the checkout's commit, when it is not a git checkout (git archive)"
    )
    p.add_argument("--device", default=None, help="cuda | mps | cpu (default: the best available)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=6, help="timed training steps per precision")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--out", default=None, help="JSON file for the result")
    args = p.parse_args(argv)
    report = run(
        Path(args.repo), args.batch, args.steps, args.warmup, pick_device(args.device), args.revision
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
