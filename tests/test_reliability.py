"""Nothing lost, nothing mixed up, bad values refused up front: run folders (fresh starts, locks, config changes,
names), interruptions, leftovers of kills, and the command line's checks before any data loads."""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal

import pytest
import torch

from lib.common.files import read_jsonl
from lib.train import TrainConfig, train
from lib.train import checkpoints as ckpt
from lib.train.__main__ import UsageError, main, parse

from .conftest import TinyDenoiser

FAST = dict(batch_size=8, lr=1e-2, log_every=2, ckpt_every=4, n_samples=4, ema_decay=0.9)


class Interrupting(TinyDenoiser):
    """A TinyDenoiser whose loss, at step `at`, sends itself `signum` or (signum None) raises KeyboardInterrupt."""

    def __init__(self, at: int, signum: int | None = None):
        super().__init__()
        self.at, self.signum = at, signum

    def loss(self, x, step):
        if step == self.at:
            if self.signum is None:
                raise KeyboardInterrupt
            os.kill(os.getpid(), self.signum)
        return super().loss(x, step)


def make_model(seed=0, cls=TinyDenoiser, **kwargs):
    torch.manual_seed(seed)
    return cls(**kwargs)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def steps_of(folder):
    return [int(p.stem.split("_")[1]) for p in ckpt.list_checkpoints(folder)]


# --- 1. bad values in TrainConfig ----------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("lr", math.nan, "finite"),
        ("lr", math.inf, "finite"),
        ("max_minutes", math.inf, "finite"),
        ("grad_clip", math.nan, "finite"),
        ("weight_decay", math.inf, "finite"),
        ("ema_decay", math.nan, "finite"),
        ("adam_beta1", 1.5, r"\[0, 1\)"),
        ("adam_beta1", -0.1, r"\[0, 1\)"),
        ("adam_beta2", 1.0, r"\[0, 1\)"),
        ("min_lr_ratio", 2.0, r"\[0, 1\]"),
        ("steps", 2.5, "must be int"),
        ("flip", "no", "must be bool"),
        ("lr", True, "must be float"),
        ("seed", -1, ">= 0"),
    ],
)
def test_non_finite_and_out_of_range_values_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} .*{message}"):
        TrainConfig(**{field: value})


def test_an_int_is_fine_where_a_float_is_due():
    assert TrainConfig(lr=1, max_minutes=0).lr == 1


@pytest.mark.parametrize(
    "argv, field",
    [
        (["--lr", "nan"], "lr"),
        (["--lr", "inf"], "lr"),
        (["--adam_beta1", "1.5"], "adam_beta1"),
        (["--adam_beta2", "-1"], "adam_beta2"),
    ],
)
def test_the_cli_turns_bad_values_into_usage_errors(argv, field, capsys):
    assert main(["pixels", "--preset", "tiny", *argv]) == 2
    assert f"error: TrainConfig.{field}" in capsys.readouterr().err


# --- 2. a fresh start moves the earlier run aside -------------------------------------------------


def test_a_fresh_start_moves_the_earlier_run_aside_and_loads_only_the_new_one(images, tmp_path):
    folder = tmp_path / "run"
    old = train(make_model(), images, TrainConfig(steps=8, **FAST), folder)
    with pytest.warns(UserWarning, match=r"afresh.*checkpoint_0000008\.pt.*moved to .*previous-"):
        new = train(make_model(seed=3), images, TrainConfig(steps=4, seed=1, **FAST), folder, resume=False)
    assert steps_of(folder) == [4]
    assert [r["step"] for r in read_jsonl(folder / "metrics.jsonl")] == [2, 4]
    assert json.loads((folder / "config.json").read_text())["train"]["steps"] == 4
    loaded = train(make_model(seed=5), images, TrainConfig(steps=4, seed=1, **FAST), folder, stop_at=0)
    assert_same_weights(new.ema, loaded.ema)
    (previous,) = folder.glob("previous-*")
    assert steps_of(previous) == [4, 8] and (previous / "metrics.jsonl").exists()
    assert_same_weights(old.ema, train(make_model(), images, TrainConfig(steps=8, **FAST), previous).ema)


def test_a_fresh_start_in_an_empty_or_new_folder_moves_nothing(images, tmp_path, recwarn):
    train(make_model(), images, TrainConfig(steps=2, **FAST), tmp_path / "run", resume=False)
    assert not list((tmp_path / "run").glob("previous-*"))
    assert not [w for w in recwarn if "afresh" in str(w.message)]


# --- 3. one process per run folder ---------------------------------------------------------------


def hold_lock(folder, holder="pid 4242 on elsewhere"):
    """Lock folder/.lock as another training process would (flock conflicts between open files, even in one
    process)."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".lock", "a+")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    handle.truncate(0)
    handle.write(holder)
    handle.flush()
    return handle


def test_a_second_process_on_the_same_run_folder_is_refused_naming_the_first(images, tmp_path):
    folder = tmp_path / "run"
    handle = hold_lock(folder)
    try:
        with pytest.raises(
            RuntimeError, match=r"in use by another training process \(pid 4242 on elsewhere\)"
        ):
            train(make_model(), images, TrainConfig(steps=2, **FAST), folder)
    finally:
        handle.close()
    assert steps_of(folder) == [] and not (folder / "config.json").exists()


def test_the_lock_is_released_after_a_run_and_after_a_crash(images, tmp_path):
    folder = tmp_path / "run"
    train(make_model(), images, TrainConfig(steps=2, **FAST), folder)
    hold_lock(folder).close()
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(make_model(crash_at=3), images, TrainConfig(steps=4, **FAST), folder)
    hold_lock(folder).close()


def test_a_lock_file_left_by_a_dead_process_does_not_block(images, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_text(
        "pid 1 on a-host-that-died"
    )  # the file stays, its flock died with the process
    assert train(make_model(), images, TrainConfig(steps=2, **FAST), folder).step == 2


# --- 4. a changed model config or data is refused before anything is written ---------------------


@pytest.mark.parametrize("stop_at", [None, 0])
@pytest.mark.parametrize(
    "change, named",
    [
        ({"beta": 4.0}, "beta: 1.0 -> 4.0"),
        ({"widths": (8, 16)}, r"widths: \[8\] -> \[8, 16\]"),
        ({"n_train": 32}, "n_train: 64 -> 32"),
        ({"data": "png copy"}, "data: 'jpeg copy' -> 'png copy'"),
    ],
)
def test_resuming_or_loading_under_another_model_config_is_refused(images, tmp_path, change, named, stop_at):
    folder = tmp_path / "run"
    saved = {"name": "vae", "beta": 1.0, "widths": (8,), "data": "jpeg copy", "n_train": 64}
    train(make_model(), images, TrainConfig(steps=4, **FAST), folder, model_config=saved, stop_at=2)
    records = lambda: {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".lock"}  # noqa
    before = records()
    with pytest.raises(
        RuntimeError,
        match=rf"another model config or data \({named}.*another run name.*"
        r"resume=False",
    ):
        train(
            make_model(),
            images,
            TrainConfig(steps=4, **FAST),
            folder,
            model_config={**saved, **change},
            stop_at=stop_at,
        )
    assert records() == before  # nothing written


def test_the_same_model_config_resumes_even_through_tuples_and_lists(images, tmp_path):
    config = {"name": "vae", "widths": (8, 16)}
    train(
        make_model(), images, TrainConfig(steps=4, **FAST), tmp_path / "run", model_config=config, stop_at=2
    )
    assert (
        train(make_model(), images, TrainConfig(steps=4, **FAST), tmp_path / "run", model_config=config).step
        == 4
    )


def test_weights_of_another_width_are_a_clear_error_not_a_size_mismatch_traceback(images, tmp_path):
    train(make_model(), images, TrainConfig(steps=2, **FAST), tmp_path / "run")
    with pytest.raises(ckpt.CheckpointError, match=r"do not fit this model.*another run name.*resume=False"):
        train(make_model(width=4), images, TrainConfig(steps=2, **FAST), tmp_path / "run")


# --- 5. run names stay inside the runs folder ----------------------------------------------------


@pytest.mark.parametrize("name", ["../results/x", "a/b", "..", ".hidden", "", "a\\b", "a..b"])
def test_a_run_name_with_a_path_in_it_is_refused(images, tmp_path, monkeypatch, isolated_outputs, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="plain folder name.*pathlib.Path"):
        train(make_model(), images, TrainConfig(steps=2, **FAST), name)
    assert not (tmp_path / "results").exists() and not (tmp_path / "a").exists()
    assert not isolated_outputs.exists()


def test_a_path_is_a_folder_anywhere(images, tmp_path):
    assert (
        train(make_model(), images, TrainConfig(steps=2, **FAST), tmp_path / "a" / "b").folder
        == tmp_path / "a" / "b"
    )


# --- 6. tuple fields from the command line --------------------------------------------------------


@pytest.mark.parametrize(
    "text, value",
    [("32,64,128", (32, 64, 128)), ("(32, 64)", (32, 64)), ("[16]", (16,)), ("(8,)", (8,)), ("64", (64,))],
)
def test_tuple_fields_take_comma_separated_values(text, value):
    assert parse(["beta_vae", "--widths", text])[2].widths == value
    assert parse(["ncsn", "--ch_mult", text])[2].ch_mult == value


@pytest.mark.parametrize(
    "text, message",
    [
        ("32,x", r"--widths expects int, got 'x' in '32,x'"),
        ("", "one or more comma-separated"),
        ("32,,64", "comma-separated"),
        ("3.5", "expects int"),
    ],
)
def test_bad_tuples_say_what_is_wrong(text, message):
    with pytest.raises(UsageError, match=message):
        parse(["beta_vae", "--widths", text])


# --- 7. SIGTERM and Ctrl-C leave a checkpoint, then stop ------------------------------------------


class Marker(Exception):
    """Raised by the test's own SIGTERM handler: without the fix, SIGTERM would reach it (not kill pytest)."""


def raise_marker(signum, frame):
    raise Marker


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_checkpoints_the_current_step_and_resume_continues_exactly(images, tmp_path, signum, capsys):
    cfg = TrainConfig(steps=12, **FAST)
    whole = train(make_model(), images, cfg, tmp_path / "whole")
    previous, sigint = signal.signal(signal.SIGTERM, raise_marker), signal.getsignal(signal.SIGINT)
    try:
        expected = SystemExit if signum == signal.SIGTERM else KeyboardInterrupt
        with pytest.raises(expected) as stopped:
            train(make_model(cls=Interrupting, at=5, signum=signum), images, cfg, tmp_path / "split")
        assert signal.getsignal(signal.SIGTERM) is raise_marker  # the handler in place before train() is back
        assert signal.getsignal(signal.SIGINT) is sigint
    finally:
        signal.signal(signal.SIGTERM, previous)
    if signum == signal.SIGTERM:
        assert stopped.value.code == 143
    assert steps_of(tmp_path / "split")[-1] == 6  # the step under way when the signal came was finished first
    assert f"checkpoint saved as {ckpt.checkpoint_path(tmp_path / 'split', 6)}" in capsys.readouterr().err
    resumed = train(make_model(seed=9), images, cfg, tmp_path / "split")
    assert resumed.step == 12
    assert_same_weights(whole.model, resumed.model)
    assert_same_weights(whole.ema, resumed.ema)


def test_a_keyboard_interrupt_inside_a_step_checkpoints_the_last_completed_step(images, tmp_path):
    cfg = TrainConfig(steps=12, **FAST)
    whole = train(make_model(), images, cfg, tmp_path / "whole")
    with pytest.raises(
        KeyboardInterrupt, match=r"at step 5/12: checkpoint saved as .*checkpoint_0000005\.pt.*resume"
    ):
        train(make_model(cls=Interrupting, at=5), images, cfg, tmp_path / "split")
    assert steps_of(tmp_path / "split") == [4, 5]
    assert_same_weights(whole.model, train(make_model(), images, cfg, tmp_path / "split").model)


def test_a_second_signal_stops_at_once_and_handlers_are_restored():
    from lib.train.interrupts import StopRequest

    before = signal.getsignal(signal.SIGINT)
    with StopRequest() as request:
        os.kill(os.getpid(), signal.SIGINT)
        assert request.requested and request.name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


# --- 8-10. leftovers of kills, final grids, another world size ------------------------------------


def test_temp_files_of_a_killed_write_are_removed_when_the_run_starts(images, tmp_path):
    folder = tmp_path / "run"
    train(make_model(), images, TrainConfig(steps=4, **FAST), folder)
    stale = [folder / ".checkpoint_0000008.pt.k1ll3d.tmp", folder / ".metrics.jsonl.x2.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    (folder / ".notes.tmp").write_text("not ours")
    handle = hold_lock(folder)
    with pytest.raises(RuntimeError, match="in use"):
        train(make_model(), images, TrainConfig(steps=8, **FAST), folder)
    handle.close()
    assert all(path.exists() for path in stale)  # another process might still be writing them
    train(make_model(), images, TrainConfig(steps=8, **FAST), folder)
    assert not any(path.exists() for path in stale) and (folder / ".notes.tmp").exists()


def test_a_finished_run_draws_its_final_grid_if_a_kill_left_it_out(images, tmp_path):
    folder = tmp_path / "run"
    train(make_model(), images, TrainConfig(steps=4, **FAST), folder)
    grid = folder / "samples" / "step_0000004.png"
    drawn = grid.read_bytes()
    grid.unlink()
    train(make_model(), images, TrainConfig(steps=4, **FAST), folder, stop_at=0)
    assert grid.read_bytes() == drawn


def test_resuming_with_another_number_of_processes_warns_about_the_global_batch(images, tmp_path):
    folder = tmp_path / "run"
    train(make_model(), images, TrainConfig(steps=4, **FAST), folder)
    path = ckpt.checkpoint_path(folder, 4)
    state = ckpt.load_checkpoint(path)
    state.update(world_size=2, rng=[state["rng"][0]] * 2)  # as written by two DDP processes
    torch.save(state, path)
    with pytest.warns(
        UserWarning,
        match=r"written by 2 process\(es\), with 1: the global batch changes from "
        r"2 x 8 = 16 to 1 x 8 = 8",
    ):
        train(make_model(), images, TrainConfig(steps=6, **FAST), folder)


# --- 11. the command line checks its options before loading data ---------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--split", "tset"], "--split must be one of"),
        (["--split", "test"], "held out"),
        (["--limit", "-5"], "--limit must be >= 0"),
        (["--run_name", "../results/x"], "--run_name: run name"),
        (["--device", "tpu"], "--device expects"),
        (["--device", "cuda:7"], "no such device"),
    ],
)
def test_bad_options_are_usage_errors_before_any_data_loads(argv, message, monkeypatch, capsys):
    def no_data(*args, **kwargs):
        raise AssertionError("the data loaded before the options were checked")

    monkeypatch.setattr("lib.train.__main__.load_cifar10", no_data)
    assert main(["pixels", "--preset", "tiny", *argv]) == 2
    assert message in capsys.readouterr().err


def test_the_cli_reports_a_changed_model_config_as_an_error(tiny_cifar, isolated_outputs, capsys):
    common = ["pixels", "--preset", "tiny", "--steps", "2", "--run_name", "r", "--split", "train"]
    assert main(common) == 0
    assert main(common + ["--limit", "40"]) == 1
    assert "n_train: 160 -> 40" in capsys.readouterr().err


def test_the_same_data_copy_elsewhere_is_the_same_data_but_another_copy_is_not(images, tmp_path):
    """Compared as lib.data's describe() writes it, without the folder it lies in (a run moved between machines)."""

    def config(copy, root):
        return {"name": "vae", "data": f"CIFAR-10 from {copy} at {root}: 50,000 train / 10,000 test images"}

    jpeg = "image folders (JPEG, lossy)"
    folder, cfg = tmp_path / "run", TrainConfig(steps=4, **FAST)
    train(make_model(), images, cfg, folder, model_config=config(jpeg, "/data/a: b"), stop_at=2)
    train(make_model(), images, cfg, folder, model_config=config(jpeg, "/elsewhere/cifar10"), stop_at=3)
    with pytest.raises(
        RuntimeError, match=r"data: 'CIFAR-10 from image folders \(JPEG, lossy\): 50,000 train"
    ):
        train(
            make_model(), images, cfg, folder, model_config=config("torchvision's pickled batches", "/data/a")
        )


# --- a damaged newest checkpoint -------------------------------------------------------------------------


def _damage(path, how: str) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[:1000] if how == "truncated" else b"\0" * len(data))
    return path.read_bytes()


@pytest.mark.parametrize("how", ["truncated", "zeroed"])
def test_a_damaged_newest_checkpoint_is_moved_aside_and_the_run_resumes_from_the_previous(
    images, tmp_path, how
):
    """A disk that filled up mid-write (or a corrupted copy) leaves the previous checkpoint: the run resumes from it
    exactly, keeps the bad file under another name and says so."""
    cfg = TrainConfig(steps=12, **FAST)
    whole = train(make_model(), images, cfg, tmp_path / "whole")
    train(make_model(), images, cfg, tmp_path / "run", stop_at=8)
    newest = ckpt.checkpoint_path(tmp_path / "run", 8)
    bad = _damage(newest, how)
    with pytest.warns(
        UserWarning, match=r"checkpoint_0000008\.pt is unreadable.*resuming from .*checkpoint_0000004"
    ):
        resumed = train(make_model(seed=5), images, cfg, tmp_path / "run")
    assert resumed.step == 12
    assert_same_weights(whole.model, resumed.model)  # steps 5 to 12 again, exactly as the whole run took them
    assert (tmp_path / "run" / "checkpoint_0000008.pt.damaged").read_bytes() == bad
    logged = [[r["step"] for r in read_jsonl(tmp_path / run / "metrics.jsonl")] for run in ("run", "whole")]
    assert logged[0] == logged[1]  # the curve continues from step 4, without the dropped steps twice


def test_when_no_checkpoint_loads_the_error_names_each_and_the_fix_and_moves_nothing(images, tmp_path):
    train(make_model(), images, TrainConfig(steps=8, **FAST), tmp_path / "run")
    for step in (4, 8):
        _damage(ckpt.checkpoint_path(tmp_path / "run", step), "truncated")
    with pytest.raises(
        ckpt.CheckpointError,
        match=r"no checkpoint .* loads: checkpoint_0000008.*checkpoint_0000004.*resume=False",
    ):
        train(make_model(), images, TrainConfig(steps=12, **FAST), tmp_path / "run")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "run")] == [
        "checkpoint_0000004.pt",
        "checkpoint_0000008.pt",
    ]
