"""The loop's speed machinery on the CPU: no host read in a normal step, on-device skipping with every optimizer
implementation, speed switches (channels-last, fused, compile) and their validation."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import lib
from lib.models import MODELS
from lib.train import TrainConfig, speed, train
from lib.train import checkpoints as ckpt
from lib.train.loop import _Loop
from lib.train.skipping import SkipCounts, Snapshot, state_tensors

from .conftest import TinyDenoiser
from .test_train import FAST, assert_same_weights, make_model

LIB = str(Path(lib.__file__).parent)
HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


@pytest.fixture
def host_reads(monkeypatch):
    """Calls from lib/ that read a tensor on the host (on CUDA each is a host-device sync): a list of names."""
    calls = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            if sys._getframe(1).f_code.co_filename.startswith(LIB):
                calls.append(f"{_name} from {sys._getframe(1).f_code.co_name}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    return calls


def tiny_loop(model, images, tmp_path, **overrides):
    return _Loop(model, images, TrainConfig(**{**FAST, **overrides}), tmp_path, torch.device("cpu"), 0, 1, {})


@pytest.mark.parametrize(
    "family, overrides",
    [
        ("denoiser", dict(optimizer="adam", fused_optimizer="off")),
        ("denoiser", dict(optimizer="adamw", fused_optimizer="on")),
        ("denoiser", dict(optimizer="adamax")),
        ("ncsn", {}),
        ("nvae", dict(optimizer="adamax")),
    ],
)
def test_a_normal_step_reads_nothing_on_the_host(family, overrides, images, tmp_path, request):
    """Steps between records never read a tensor on the host from lib/ (torch's own CPU step counters aside):
    the finiteness verdict, the skip counters, the EMA weight and the log sums stay on the device."""
    model = make_model() if family == "denoiser" else MODELS[family].build(MODELS[family].presets["tiny"][0])
    loop = tiny_loop(model, images, tmp_path, **overrides)
    loop.train_step()  # NVAE reads its spectral vectors' ready flag once, on the first step
    calls = request.getfixturevalue("host_reads")
    for _ in range(3):
        loop.train_step()
    assert calls == []
    loop.window.summary(8)
    assert calls  # the spy sees the read a record does


@pytest.mark.parametrize(
    "optimizer, fused", [("adam", "off"), ("adam", "on"), ("adamw", "on"), ("adamax", "auto")]
)
def test_skipped_updates_leave_weights_and_optimizer_state_exactly_as_they_were(
    optimizer, fused, images, tmp_path
):
    cfg = TrainConfig(steps=4, optimizer=optimizer, fused_optimizer=fused, **FAST)
    clean = train(make_model(), images, cfg, tmp_path / "clean", stop_at=2)
    poisoned = train(make_model(nan_steps={2, 3}), images, cfg, tmp_path / "poisoned")
    assert poisoned.n_skipped == 2
    assert_same_weights(clean.model, poisoned.model)
    assert_same_weights(clean.ema, poisoned.ema)
    states = [
        torch.load(tmp_path / run / f"checkpoint_000000{step}.pt", weights_only=True)["optimizer"]["state"]
        for run, step in (("clean", 2), ("poisoned", 4))
    ]
    for key in states[0]:
        for name, value in states[0][key].items():
            assert torch.equal(value, states[1][key][name]), (key, name)


@pytest.mark.parametrize("optimizer, fused", [("adam", "off"), ("adam", "on"), ("adamax", "auto")])
def test_a_skipped_first_step_leaves_a_fresh_optimizer_state(optimizer, fused, images, tmp_path):
    """The state torch creates lazily in the first step is put back to the zeros it starts from."""
    model = make_model(nan_steps={0})
    before = [p.detach().clone() for p in model.parameters()]
    loop = tiny_loop(model, images, tmp_path, optimizer=optimizer, fused_optimizer=fused)
    loop.train_step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(not t.any() for t in state_tensors(loop.optimizer))  # moments and step counts all zero
    assert loop.counts.read() == {"n_skipped": 1, "bad_in_a_row": 1, "bad_streak_end": 0, "n_updates": 0}


def test_snapshot_puts_back_nan_and_keeps_good_values():
    a, b = torch.ones(3), torch.arange(4, dtype=torch.int64).view(2, 2)
    snap = Snapshot([a, b])
    snap.save()
    a.fill_(float("nan")), b.fill_(7)
    snap.keep_if(torch.tensor(False))
    assert torch.equal(a, torch.ones(3)) and torch.equal(b, torch.arange(4).view(2, 2))
    a.fill_(2.0)
    snap.keep_if(torch.tensor(True))
    assert torch.equal(a, torch.full((3,), 2.0))


def test_skip_counts_track_the_streak_and_where_it_reached_the_limit():
    counts = SkipCounts(max_bad=2, device=torch.device("cpu"))
    for step, ok in enumerate([True, False, True, False, False, False, True], start=1):
        counts.add(torch.tensor(ok), step)
    assert counts.read() == {"n_skipped": 4, "bad_in_a_row": 0, "bad_streak_end": 5, "n_updates": 3}


def test_channels_last_trains_resumes_and_loads_into_a_plain_model(images, tmp_path):
    cfg = TrainConfig(steps=4, channels_last="on", **FAST)
    whole = train(make_model(), images, cfg, tmp_path / "whole")
    assert whole.model.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    train(make_model(), images, cfg, tmp_path / "split", stop_at=2)
    resumed = train(make_model(), images, cfg, tmp_path / "split")
    assert_same_weights(whole.model, resumed.model)
    grads = []
    for fmt in ("on", "off"):  # the same network, input and loss in both formats (randn_like would differ:
        loop = tiny_loop(make_model(), images, tmp_path / fmt, channels_last=fmt)  # it fills in memory order)
        x = speed.batch_format(loop.batches.batch(0), loop.channels_last)
        loop.model.net(x).square().mean().backward()
        grads.append([p.grad for p in loop.model.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)  # up to summation order


def test_compile_wraps_the_networks_in_place_and_trains_like_eager(images, tmp_path, monkeypatch):
    """The dynamo 'eager' backend (traced, not code-generated) keeps the test fast and the arithmetic identical;
    state_dict keys are unchanged, so checkpoints do not depend on the setting."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile_(fn, backend="eager"))
    eager = train(make_model(), images, TrainConfig(steps=4, **FAST), tmp_path / "eager")
    compiled = train(make_model(), images, TrainConfig(steps=4, compile=True, **FAST), tmp_path / "compiled")
    assert compiled.model.net._compiled_call_impl is not None
    assert_same_weights(eager.model, compiled.model)
    assert_same_weights(eager.ema, compiled.ema)


def test_cuda_graphs_need_cuda(images, tmp_path):
    with pytest.raises(ValueError, match="compile_mode='reduce-overhead'.*CUDA"):
        tiny_loop(TinyDenoiser(), images, tmp_path, compile=True, compile_mode="reduce-overhead")


@pytest.mark.parametrize(
    "field, value",
    [
        ("channels_last", "yes"),
        ("fused_optimizer", 1),
        ("tf32", "maybe"),
        ("cudnn_benchmark", True),
        ("compile_mode", "fast"),
        ("compile", "on"),
    ],
)
def test_invalid_speed_fields_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


def test_adamax_has_no_fused_kernel_and_says_so():
    with pytest.raises(ValueError, match="TrainConfig.fused_optimizer.*no fused adamax"):
        TrainConfig(optimizer="adamax", fused_optimizer="on")
    assert TrainConfig(optimizer="adamax").fused_optimizer == "auto"  # auto: foreach on CUDA


def test_a_run_resumed_under_another_optimizer_implementation_uses_the_new_one(images, tmp_path):
    """torch's load_state_dict would restore the saved fused/foreach flags; the loop keeps the configured ones."""
    train(make_model(), images, TrainConfig(steps=2, fused_optimizer="off", **FAST), tmp_path / "run")
    with pytest.warns(UserWarning, match="fused_optimizer: off -> on"):
        resumed = train(
            make_model(nan_steps={2}),
            images,
            TrainConfig(steps=4, fused_optimizer="on", **FAST),
            tmp_path / "run",
        )
    assert resumed.step == 4 and resumed.n_skipped == 1
    state = torch.load(tmp_path / "run" / "checkpoint_0000004.pt", weights_only=True)["optimizer"]
    assert all(group["fused"] for group in state["param_groups"])


# --- the device counters where interrupts, records and results read them ------------------------------------


class SkipsThenInterrupts(TinyDenoiser):
    """NaN losses at `nan_steps`; at step `at`, SIGINT to itself (signal=True) or a KeyboardInterrupt from the loss."""

    def __init__(self, at: int, nan_steps=(), signal_it: bool = False, explode_at: int | None = None):
        super().__init__(nan_steps=nan_steps)
        self.at, self.signal_it, self.explode_at = at, signal_it, explode_at

    def loss(self, x, step):
        if step == self.at:
            if not self.signal_it:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)
        loss, stats = super().loss(x, step)
        if step == self.explode_at:
            self.net[0].weight.data[0, 0, 0, 0] = float(
                "inf"
            )  # after the forward pass: this step looks finite
        return loss, stats


def test_an_interrupt_inside_a_step_reads_the_device_counters_and_checkpoints(images, tmp_path):
    """interrupted_now checks n_updates + n_skipped == step: with two skipped updates the counters (read from the
    device) still agree with the step, so the last completed step is saved with its counts."""
    cfg = TrainConfig(steps=12, **FAST)
    with pytest.raises(
        KeyboardInterrupt, match=r"at step 5/12: checkpoint saved as .*checkpoint_0000005\.pt"
    ):
        train(SkipsThenInterrupts(at=5, nan_steps={1, 2}), images, cfg, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint_0000005.pt", weights_only=True)
    assert (state["n_updates"], state["n_skipped"], state["bad_in_a_row"]) == (3, 2, 0)
    resumed = train(make_model(), images, cfg, tmp_path / "run")
    assert resumed.step == 12 and resumed.n_skipped == 2


def test_a_stop_after_an_exploding_update_writes_no_checkpoint_and_says_so(images, tmp_path, capsys):
    """Step 6's update leaves a weight infinite; SIGINT during step 7 asks for a checkpoint after it, which would
    hold that weight: none is written and the message names the newest good one instead."""
    cfg = TrainConfig(steps=12, **FAST)
    model = SkipsThenInterrupts(at=6, signal_it=True, explode_at=5)
    with pytest.warns(UserWarning, match="not finite"), pytest.raises(KeyboardInterrupt):
        train(model, images, cfg, tmp_path / "run")
    err = capsys.readouterr().err
    assert "at step 7/12: no checkpoint written now; the newest is" in err and "checkpoint_0000004.pt" in err
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "run")] == ["checkpoint_0000004.pt"]


def test_a_snapshot_keeps_the_live_strides_of_channels_last_tensors():
    """Views with the live tensors' strides let torch's batched copy take its one-kernel path (with NCHW views of
    channels-last weights it copied tensor by tensor); the values round-trip either way."""
    weight = torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    others = [
        torch.randn(7),
        torch.randn(6, 3)[:, :2],
        torch.randn(2, 3, 1, 1),
    ]  # 1-D, a gapped view, size-1 dims
    snap = Snapshot([weight, *others])
    live, saved_views = snap.groups[0][0], snap.groups[0][1]
    assert saved_views[0].stride() == weight.stride() and saved_views[3].stride() == others[2].stride()
    kept = [t.clone() for t in live]
    snap.save()
    for t in live:
        t.fill_(float("nan"))
    snap.keep_if(torch.tensor(False))
    assert all(torch.equal(a, b) for a, b in zip(live, kept))
    assert weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    "family, net, auto_on_cuda",
    [("ncsn", "unet", False), ("ncsn", "refinenet", False), ("nvae", None, True), ("beta_vae", None, True)],
)
def test_channels_last_auto_is_chosen_per_net_and_stays_overridable(family, net, auto_on_cuda):
    """auto: the networks whose norms convert layouts (GroupNorm, InstanceNorm) stay NCHW on CUDA; off the GPU it
    is off; on / off force it either way. No CUDA is needed: the choice reads only the device's type."""
    cfg = MODELS[family].presets["tiny"][0]
    model = MODELS[family].build(replace(cfg, net=net) if net else cfg)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert speed.channels_last_on(model, TrainConfig(), cuda) is auto_on_cuda
    assert speed.channels_last_on(model, TrainConfig(), cpu) is False
    assert speed.channels_last_on(model, TrainConfig(channels_last="on"), cpu) is True
    assert speed.channels_last_on(model, TrainConfig(channels_last="off"), cuda) is False
