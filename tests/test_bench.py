"""The throughput benchmark: FLOP counting against a closed form, the peak table, and a tiny rehearsal of every
family through the real loop and samplers (fields and arithmetic only: timings are never asserted)."""

from __future__ import annotations

import json

import pytest
import torch

from lib import bench
from lib.bench import timing
from lib.bench.timing import mode_config
from lib.common import devices
from lib.common.accelerator import cpu_has_native_bf16, resolve_amp
from lib.models import MODELS


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


def test_peaks_are_looked_up_by_device_name():
    assert bench.peak_bf16("NVIDIA H100 80GB HBM3")["peak_bf16_tflops"] == 989.0
    assert bench.peak_bf16("NVIDIA H100 PCIe")["peak_bf16_tflops"] == 756.0
    assert bench.peak_bf16("NVIDIA H200")["peak_bf16_tflops"] == 989.0
    assert bench.peak_bf16("cpu (2 threads, x86_64)")["peak_bf16_tflops"] is None


def test_the_cpu_is_named_by_its_model_and_bf16_support(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6430\n"
    )
    assert devices.cpu_model(str(cpuinfo)) == "Intel(R) Xeon(R) Gold 6430"
    assert devices.cpu_model(str(tmp_path / "absent")) != ""  # falls back to what platform knows
    name = devices.describe_device("cpu")
    assert name.startswith(f"cpu: {devices.cpu_model()} ({torch.get_num_threads()} threads")
    assert ("native bf16" in name) and (("no native" in name) != cpu_has_native_bf16())
    assert bench.peak_bf16(name)["peak_bf16_tflops"] is None


def test_modes_set_the_loops_speed_switches_and_keep_the_preset():
    preset = MODELS["nvae"].presets["reference"][1]
    plain, fast = (mode_config(preset, mode, 32) for mode in ("plain", "fast"))
    assert plain.amp == "off" and not plain.compile and plain.channels_last == "off" and plain.tf32 == "off"
    assert fast.amp == "auto" and fast.compile and fast.channels_last == "auto"
    assert fast.fused_optimizer == "auto"  # adamax has no fused kernel
    assert mode_config(MODELS["ncsn"].presets["paper"][1], "fast", 8).fused_optimizer == "on"
    assert fast.optimizer == preset.optimizer and fast.lr == preset.lr and fast.batch_size == 32


def test_the_tiny_rehearsal_reports_every_family_net_and_mode(tmp_path, capsys):
    report = bench.main(
        [
            "all",
            "--tiny",
            "--device",
            "cpu",
            "--no_compile",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--sample_repeats",
            "1",
            "--batch",
            "2",
            "--sample_batch",
            "2",
            "--eval_batch",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    written = json.loads((tmp_path / "cpu-tiny.json").read_text())
    assert written["results"] == report["results"] and written["torch"] == torch.__version__
    nets = [(r["family"], r["net"], r["mode"]) for r in report["results"]]
    expected = {
        "ncsn": ["unet", "refinenet"],
        "nvae": ["nvae_reference", "nvae_official_small"],
        "vae": ["beta_vae", "iwae_k1", "iwae_k5", "iwae_k50", "iwae_eval_k5000"],
    }
    assert nets == [
        (f, n, m) for f in ("ncsn", "nvae", "vae") for n in expected[f] for m in ("plain", "fast")
    ]
    for row in report["results"]:
        assert (
            row["parameters"] > 0 and row["sample_evaluations_per_s"] > 0 and row["gflop_per_evaluation"] > 0
        )
        if row["net"] == "iwae_eval_k5000":
            assert "train_img_per_s" not in row
            continue
        assert row["skipped_updates"] == 0 and row["train_img_per_s"] > 0 and row["warmup_seconds"] >= 0
        assert row["gflop_per_image_train_step"] > row["gflop_per_evaluation"]  # backward costs more
        assert row["train_tflop_per_s"] == pytest.approx(
            row["gflop_per_image_train_step"] * row["train_img_per_s"] / 1e3, rel=0.01, abs=1e-3
        )
        assert row["settings"]["amp"] == ("off" if row["mode"] == "plain" else "auto")
        auto = resolve_amp("auto", "cpu").amp  # bf16 on a CPU with AMX or AVX-512 BF16, else off
        assert row["precision"] == ("off" if row["mode"] == "plain" else auto)
    iwae = {r["net"]: r["gflop_per_image_train_step"] for r in report["results"] if r["mode"] == "plain"}
    assert iwae["iwae_k1"] < iwae["iwae_k5"] < iwae["iwae_k50"]  # the decoder runs k times per image
    printed = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"family"')
    ]
    assert printed == report["results"]  # one JSON line per row as it is measured


def test_a_failed_compile_or_a_failing_row_is_recorded_and_the_next_row_runs(no_cxx_compiler, monkeypatch):
    """Without a C++ compiler the fast row trains eagerly and says so; a row that raises is a row with an error."""
    calls = []
    time_sampling = bench.time_sampling

    def first_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("simulated: out of memory")
        return time_sampling(*args, **kwargs)

    monkeypatch.setattr(bench, "time_sampling", first_fails)
    tiny = ["--tiny", "--device", "cpu", "--steps", "1", "--warmup", "0", "--sample_repeats", "1"]
    report = bench.main(["vae", "--nets", "beta_vae,iwae_k1", "--modes", "fast", *tiny, "--batch", "2"])
    first, second = report["results"]
    assert first["error"] == "OutOfMemoryError: simulated: out of memory"
    assert "InvalidCxxCompiler" in second["compile_failure"] and second["train_img_per_s"] > 0


def test_timed_steps_never_cross_an_epoch(monkeypatch):
    """A new epoch costs two blocking host-to-device copies; 2 x batch images made one every other step, so
    host_syncs_per_step read ~1 and small models looked slow."""
    from lib.data import InfiniteBatches
    from lib.models import IWAE, IWAEConfig
    from lib.models.vae import VAE_TINY

    epochs, load = [], InfiniteBatches._load_epoch
    monkeypatch.setattr(InfiniteBatches, "_load_epoch", lambda self, e: epochs.append(e) or load(self, e))
    cfg = mode_config(MODELS["iwae"].presets["default"][1], "plain", 2)
    timing.time_training(IWAE(IWAEConfig(**VAE_TINY)), cfg, torch.device("cpu"), warmup=2, steps=5)
    assert set(epochs) == {0}


def test_batch_and_sample_batch_are_given_for_every_family_or_per_family(monkeypatch):
    args = bench.parse_args(["all", "--batch", "ncsn=16,nvae=32", "--sample_batch", "12"])
    assert args.batch == {"*": 0, "ncsn": 16, "nvae": 32} and args.sample_batch == {"*": 12}
    seen = {}

    def record(family):
        return lambda a: seen.setdefault(family, (a.batch, a.sample_batch)) and []

    monkeypatch.setattr(bench, "SUITES", {f: record(f) for f in bench.FAMILIES})
    bench.run(args)
    assert seen == {"ncsn": (16, 12), "nvae": (32, 12), "vae": (0, 12)}  # 0: the preset's own batch
    with pytest.raises(SystemExit):
        bench.parse_args(["all", "--batch", "gan=16"])  # argparse names the unknown family


def test_the_official_codes_commit_is_recorded_only_from_its_own_checkout(tmp_path):
    import subprocess

    from lib.bench.official_ncsnv2 import revision

    assert revision(tmp_path, "1bcea03") == "1bcea03"
    assert revision(tmp_path).startswith("unknown")  # not a git checkout
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    inner = tmp_path / "ncsnv2"
    inner.mkdir()
    commit = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q"]
    subprocess.run([*commit, "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert revision(tmp_path) == head.stdout.strip()
    assert revision(inner).startswith("unknown")  # inside another repository: not that one's commit
