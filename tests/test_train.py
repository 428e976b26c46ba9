"""The one loop: schedule, EMA, exact resume, crash recovery, non-finite skipping, checkpoints, records."""

from __future__ import annotations

import json
import math
import sys
import types

import pytest
import torch

from lib.common.files import read_jsonl
from lib.train import NonFiniteError, TrainConfig, lr_at, train
from lib.train import checkpoints as ckpt
from lib.train.ema import EMA
from lib.train.loop import _Loop

from .conftest import TinyDenoiser

FAST = dict(batch_size=8, lr=1e-2, log_every=2, ckpt_every=4, n_samples=4, ema_decay=0.9)


def make_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return TinyDenoiser(**kwargs)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# --- learning-rate schedule and EMA ---------------------------------------------------------------


def test_lr_warmup_then_cosine_to_floor():
    cfg = TrainConfig(steps=110, lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)  # halfway: the mean of peak and floor
    assert lr_at(110, cfg) == pytest.approx(0.1)
    assert lr_at(500, cfg) == pytest.approx(0.1)  # past the end it stays at the floor


def test_constant_schedule_after_warmup():
    cfg = TrainConfig(steps=50, lr=0.5, warmup_steps=4)
    assert [lr_at(s, cfg) for s in (0, 3, 4, 49)] == pytest.approx([0.125, 0.5, 0.5, 0.5])


def test_ema_update_is_the_exponential_average_and_copies_buffers():
    model = make_model()
    ema = EMA(model, decay=0.9, warmup=False)
    before = [p.clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model.net[1].running_mean.fill_(3.0)
    ema.update(model, n_updates=0)
    for old, new, p in zip(before, ema.model.parameters(), model.parameters()):
        assert torch.allclose(new, 0.9 * old + 0.1 * p)
    assert torch.equal(ema.model.net[1].running_mean, torch.full((8,), 3.0))
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_ema_warmup_ramps_the_decay():
    ema = EMA(make_model(), decay=0.999, warmup=True)
    assert ema.decay_at(0) == pytest.approx(0.1)
    assert ema.decay_at(90) == pytest.approx(91 / 100)
    assert ema.decay_at(10**6) == pytest.approx(0.999)


# --- resume, crashes, checkpoints -----------------------------------------------------------------


@pytest.mark.parametrize("sample_every", [0, 3])
def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(images, tmp_path, sample_every):
    """With sample_every=3 the stop step 6 is a grid step: the whole run draws a grid inside the loop there, the
    stopped one after its checkpoint. Grids must not touch the training RNG, or the two runs diverge."""
    cfg = TrainConfig(steps=12, sample_every=sample_every, **FAST)
    whole = train(make_model(), images, cfg, tmp_path / "whole")
    first = train(make_model(), images, cfg, tmp_path / "split", stop_at=6)
    assert first.step == 6
    resumed = train(make_model(seed=123), images, cfg, tmp_path / "split")  # other init: weights must load
    assert resumed.step == 12
    assert_same_weights(whole.model, resumed.model)
    assert_same_weights(whole.ema, resumed.ema)
    if sample_every:
        grids = [
            sorted(p.name for p in (tmp_path / run / "samples").glob("*.png")) for run in ("whole", "split")
        ]
        assert grids[0] == grids[1] == [f"step_{s:07d}.png" for s in (3, 6, 9, 12)]
        grid_6 = [
            (tmp_path / run / "samples" / "step_0000006.png").read_bytes() for run in ("whole", "split")
        ]
        assert grid_6[0] == grid_6[1]  # same weights, same grid seed: the same picture


def test_sample_grids_leave_the_training_rng_alone_and_reuse_one_noise(images, tmp_path):
    """A grid draws from its own seeded stream: the global RNG is untouched and equal weights give equal grids."""
    loop = _Loop(make_model(), images, TrainConfig(**FAST), tmp_path, torch.device("cpu"), 0, 1, {})
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    loop._save_samples()
    first = (tmp_path / "samples" / "step_0000000.png").read_bytes()
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(8)  # another training state: the same grid noise
    loop._save_samples()
    assert (tmp_path / "samples" / "step_0000000.png").read_bytes() == first


def test_crash_resumes_from_last_checkpoint_exactly(images, tmp_path):
    cfg = TrainConfig(steps=12, **FAST)
    whole = train(make_model(), images, cfg, tmp_path / "whole")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(make_model(crash_at=7), images, cfg, tmp_path / "crash")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "crash")] == ["checkpoint_0000004.pt"]
    resumed = train(make_model(), images, cfg, tmp_path / "crash")
    assert_same_weights(whole.model, resumed.model)
    steps = [r["step"] for r in read_jsonl(tmp_path / "crash" / "metrics.jsonl")]
    assert steps == sorted(set(steps)) == [2, 4, 6, 8, 10, 12]  # records after step 4 replaced, not repeated


def test_a_finished_run_is_loaded_not_retrained(images, tmp_path):
    cfg = TrainConfig(steps=4, **FAST)
    done = train(make_model(), images, cfg, tmp_path / "run")
    records = (tmp_path / "run" / "metrics.jsonl").read_text()
    again = train(make_model(seed=5), images, cfg, tmp_path / "run")
    assert again.step == 4
    assert again.img_per_s == pytest.approx(4 * 8 / again.wall_seconds) and again.img_per_s > 0
    assert_same_weights(done.ema, again.ema)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == records


def test_resuming_with_a_changed_config_warns_naming_the_fields(images, tmp_path):
    train(make_model(), images, TrainConfig(steps=4, **FAST), tmp_path / "run")
    with pytest.warns(UserWarning, match=r"steps: 4 -> 6"):
        result = train(make_model(), images, TrainConfig(steps=6, **FAST), tmp_path / "run")
    assert result.step == 6


def test_checkpoint_holds_the_full_state_and_loads_without_pickled_objects(images, tmp_path):
    cfg = TrainConfig(steps=4, **FAST)
    train(make_model(), images, cfg, tmp_path / "run", model_config={"width": 8})
    state = torch.load(ckpt.checkpoint_path(tmp_path / "run", 4), weights_only=True)
    for key in ("model", "ema", "optimizer", "scaler", "step", "rng", "train_config", "model_config"):
        assert key in state
    assert (
        state["step"] == 4 and state["train_config"]["steps"] == 4 and state["model_config"] == {"width": 8}
    )
    assert not list((tmp_path / "run").glob(".*.tmp"))  # no temp file left behind


def test_only_the_newest_checkpoints_are_kept(images, tmp_path):
    train(make_model(), images, TrainConfig(steps=16, keep_ckpts=2, **FAST), tmp_path / "run")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "run")] == [
        "checkpoint_0000012.pt",
        "checkpoint_0000016.pt",
    ]


def test_checkpoint_missing_keys_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint_0000001.pt"
    torch.save({"step": 1}, path)
    with pytest.raises(ckpt.CheckpointError, match="missing keys"):
        ckpt.load_checkpoint(path)


def test_init_from_copies_weights_into_a_fresh_run(images, tmp_path):
    old = train(make_model(), images, TrainConfig(steps=4, **FAST), tmp_path / "stage1")
    new = train(
        make_model(seed=9),
        images,
        TrainConfig(steps=4, **FAST),
        tmp_path / "stage2",
        init_from=tmp_path / "stage1",
        stop_at=0,
    )
    assert new.step == 0
    assert_same_weights(old.model, new.model)
    assert_same_weights(old.ema, new.ema)


def test_rng_round_trip_reproduces_the_next_draws():
    state = ckpt.capture_rng()
    expected = (torch.rand(3), __import__("numpy").random.rand(3), __import__("random").random())
    ckpt.restore_rng(state)
    again = (torch.rand(3), __import__("numpy").random.rand(3), __import__("random").random())
    assert torch.equal(expected[0], again[0]) and (expected[1] == again[1]).all() and expected[2] == again[2]


# --- non-finite updates, clipping, time budget ----------------------------------------------------


def test_non_finite_updates_are_skipped_and_counted(images, tmp_path):
    cfg = TrainConfig(steps=4, **FAST)
    clean = train(make_model(), images, cfg, tmp_path / "clean", stop_at=2)
    poisoned = train(make_model(nan_steps={2, 3}), images, cfg, tmp_path / "poisoned")
    assert poisoned.n_skipped == 2
    assert_same_weights(clean.model, poisoned.model)  # steps 2 and 3 changed nothing
    records = read_jsonl(tmp_path / "poisoned" / "metrics.jsonl")
    assert records[-1]["skipped"] == 2 and math.isnan(records[-1]["loss"])  # the window held only bad steps
    assert math.isfinite(records[0]["loss"])


def test_too_many_non_finite_updates_in_a_row_stop_with_a_clear_error(images, tmp_path):
    cfg = TrainConfig(steps=20, max_bad_steps=3, **FAST)
    with pytest.raises(NonFiniteError, match="3 non-finite updates in a row") as err:
        train(make_model(nan_steps=range(5, 20)), images, cfg, tmp_path / "run")
    assert "checkpoint_0000004.pt" in str(err.value)
    state = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path / "run", 4))
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_gradients_are_clipped_to_the_configured_norm(images, tmp_path):
    loop = _Loop(
        make_model(),
        images,
        TrainConfig(grad_clip=1e-3, **{**FAST, "batch_size": 4}),
        tmp_path,
        torch.device("cpu"),
        0,
        1,
        {},
    )
    loss, _ = loop._forward(loop.batches.batch(0))
    norm_before, ok = loop._backward(loss * 1e3)
    norm_after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in loop.model.parameters()]))
    assert ok and norm_before > 1e-2
    assert norm_after == pytest.approx(1e-3, rel=1e-3)


def test_time_budget_stops_early_with_a_checkpoint(images, tmp_path):
    cfg = TrainConfig(steps=1000, max_minutes=1e-9, **FAST)
    result = train(make_model(), images, cfg, tmp_path / "run")
    assert result.step == 2  # the budget is checked at the first log step
    assert ckpt.list_checkpoints(tmp_path / "run")[-1].name == "checkpoint_0000002.pt"


# --- records --------------------------------------------------------------------------------------


def test_metrics_config_and_samples_are_recorded(images, tmp_path):
    result = train(
        make_model(), images, TrainConfig(steps=6, **FAST), tmp_path / "run", model_config={"width": 8}
    )
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4, 6]
    for key in ("loss", "mse", "lr", "grad_norm", "img_per_s", "skipped", "epoch"):
        assert key in records[0], key
    assert records[-1]["epoch"] == pytest.approx(6 / 8)  # 64 images / batch 8 = 8 steps per epoch
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["steps"] == 6 and config["model"] == {"width": 8}
    assert config["n_params"] == sum(p.numel() for p in result.model.parameters())
    grids = list((tmp_path / "run" / "samples").glob("*.png"))
    assert [g.name for g in grids] == ["step_0000006.png"]


def test_run_name_resolves_under_smoke_outputs(images, isolated_outputs, monkeypatch):
    monkeypatch.setenv("WORKBOOK_SMOKE", "1")
    result = train(make_model(), images, TrainConfig(steps=2, **FAST), "named-run")
    assert result.folder == isolated_outputs / "smoke" / "runs" / "named-run"
    assert (result.folder / "metrics.jsonl").exists()


def test_wandb_is_mirrored_when_enabled_and_absent_wandb_is_fine(images, tmp_path, monkeypatch):
    calls = []
    fake = types.SimpleNamespace(
        init=lambda **kw: types.SimpleNamespace(
            log=lambda record, step: calls.append((step, record["loss"])),
            finish=lambda: calls.append("finish"),
        )
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_MODE", "offline")
    train(make_model(), images, TrainConfig(steps=4, **FAST), tmp_path / "mirrored")
    assert [c[0] for c in calls[:-1]] == [2, 4] and calls[-1] == "finish"
    calls.clear()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    train(make_model(), images, TrainConfig(steps=2, **FAST), tmp_path / "disabled")
    assert calls == []
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    monkeypatch.setenv("WANDB_MODE", "online")
    train(make_model(), images, TrainConfig(steps=2, **FAST), tmp_path / "absent")
    assert (tmp_path / "absent" / "metrics.jsonl").exists()


def test_wandb_that_fails_to_start_warns_once_and_training_keeps_local_records(images, tmp_path, monkeypatch):
    """Installed but not logged in (or offline, or misconfigured): wandb.init raises; the run must go on."""

    def refuse(**kwargs):
        raise RuntimeError("api_key not configured (no-tty)")

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=refuse))
    monkeypatch.setenv("WANDB_MODE", "online")
    with pytest.warns(
        UserWarning, match=r"wandb\.init failed.*api_key not configured.*metrics\.jsonl"
    ) as caught:
        result = train(make_model(), images, TrainConfig(steps=4, **FAST), tmp_path / "run")
    assert result.step == 4 and len([w for w in caught if "wandb" in str(w.message)]) == 1
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [2, 4]


def test_wandb_mode_from_the_environment_reaches_wandb_init(images, tmp_path, monkeypatch):
    seen = {}
    fake = types.SimpleNamespace(
        init=lambda **kw: (
            seen.update(kw) or types.SimpleNamespace(log=lambda record, step: None, finish=lambda: None)
        )
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_MODE", "offline")
    train(make_model(), images, TrainConfig(steps=2, **FAST), tmp_path / "run")
    assert seen["mode"] == "offline" and seen["id"] == "run" and seen["dir"] == str(tmp_path / "run")


def test_ddp_ranks_agree_on_skipping_a_non_finite_update(images, tmp_path, monkeypatch):
    """Finiteness is reduced with MIN across ranks (one bad rank makes all skip); one process never syncs."""
    import torch.distributed as dist

    reductions = []

    def other_rank_was_bad(tensor, op=None):
        reductions.append(op)
        tensor.zero_()

    monkeypatch.setattr(dist, "all_reduce", other_rank_was_bad)
    loop = _Loop(make_model(), images, TrainConfig(**FAST), tmp_path, torch.device("cpu"), 0, 1, {})
    loss, _ = loop._forward(loop.batches.batch(0))
    assert loop._backward(loss)[1] and reductions == []  # single process: no collective call
    loop.world = 2  # as if under torchrun (DDP wrapping not needed here)
    loss, _ = loop._forward(loop.batches.batch(1))
    assert not loop._backward(loss)[1] and reductions == [dist.ReduceOp.MIN]


@pytest.mark.parametrize(
    "field, value",
    [
        ("steps", 0),
        ("batch_size", 0),
        ("lr", -1.0),
        ("amp", "fp8"),
        ("optimizer", "sgd"),
        ("schedule", "linear"),
        ("ema_decay", 1.0),
        ("grad_clip", -1.0),
        ("max_bad_steps", 0),
    ],
)
def test_invalid_train_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


# --- what a checkpoint carries across an interruption ----------------------------------------------


def test_after_a_resume_the_first_record_covers_the_same_steps_as_an_uninterrupted_run(images, tmp_path):
    """The log window is checkpointed: stopping at step 5 (mid-window) writes no record there, and the record at
    step 6 averages steps 5 and 6 in both runs."""
    cfg = TrainConfig(steps=8, **FAST)
    train(make_model(), images, cfg, tmp_path / "whole")
    train(make_model(), images, cfg, tmp_path / "split", stop_at=5)
    train(make_model(), images, cfg, tmp_path / "split")
    whole, split = (read_jsonl(tmp_path / run / "metrics.jsonl") for run in ("whole", "split"))
    assert [r["step"] for r in split] == [r["step"] for r in whole] == [2, 4, 6, 8]
    for a, b in zip(whole, split):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["mse"] == pytest.approx(
            b["mse"], rel=1e-6
        )


def test_a_stop_and_resume_does_not_move_the_step_where_a_non_finite_streak_stops_the_run(images, tmp_path):
    """Bad steps 6, 7, 8 (1-based); the streak is checkpointed at the stop after step 7, so both runs stop after
    step 8 naming the same steps (a streak restarted at 0 would only stop after step 10)."""
    cfg = TrainConfig(steps=20, max_bad_steps=3, **FAST)
    with pytest.raises(NonFiniteError) as whole:
        train(make_model(nan_steps=range(5, 20)), images, cfg, tmp_path / "whole")
    train(make_model(nan_steps=range(5, 20)), images, cfg, tmp_path / "split", stop_at=7)
    with pytest.raises(NonFiniteError) as split:
        train(make_model(nan_steps=range(5, 20)), images, cfg, tmp_path / "split")
    for err in (whole, split):
        assert "(steps 6 to 8," in str(err.value) and "checked at step 8;" in str(err.value)


def test_the_error_names_steps_as_checkpoints_do(images, tmp_path):
    """checkpoint_N holds the state after step N; the first bad update (loss at 0-based step 5) is step 6."""
    cfg = TrainConfig(steps=20, max_bad_steps=2, **FAST)
    with pytest.raises(NonFiniteError) as err:
        train(make_model(nan_steps=range(5, 20)), images, cfg, tmp_path / "run")
    assert "(steps 6 to 7," in str(err.value) and "checkpoint_0000004.pt" in str(err.value)
    assert ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path / "run", 4))["n_updates"] == 4


class ExplodingDenoiser(TinyDenoiser):
    """A finite loss whose update leaves a weight infinite (an exploding update); every later loss is NaN."""

    def __init__(self, explode_at: int):
        super().__init__()
        self.explode_at = explode_at

    def loss(self, x, step):
        loss, stats = super().loss(x, step)
        if step == self.explode_at:
            self.net[0].weight.data[0, 0, 0, 0] = float(
                "inf"
            )  # after the forward pass: this step looks finite
        return loss, stats


def test_an_exploding_update_never_becomes_the_last_good_checkpoint(images, tmp_path):
    """Step 6 makes a weight infinite; the checkpoint due after step 8 would hold it, so none is written and the
    error names checkpoint 4, whose weights are finite."""
    torch.manual_seed(0)
    cfg = TrainConfig(steps=20, max_bad_steps=3, **{**FAST, "log_every": 5})
    with pytest.warns(UserWarning, match="not finite"), pytest.raises(NonFiniteError) as err:
        train(ExplodingDenoiser(explode_at=5), images, cfg, tmp_path / "run")
    assert "checkpoint_0000004.pt" in str(err.value) and "(steps 7 to 9," in str(err.value)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "run")] == ["checkpoint_0000004.pt"]
