"""`python -m lib.train`: argument mapping and errors, a real run, and DDP on gloo with 2 processes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import torch

from lib.common import files
from lib.common.paths import repo_root
from lib.models import MODELS
from lib.train import checkpoints as ckpt
from lib.train import lr_at
from lib.train.__main__ import UsageError, main, parse
from lib.workbook import budget
from lib.workbook.training import load_run_model


def test_options_map_onto_both_configs_with_their_types():
    name, options, model_cfg, train_cfg = parse(
        [
            "pixels",
            "--preset",
            "tiny",
            "--steps",
            "7",
            "--lr=0.5",
            "--flip",
            "false",
            "--init_scale",
            "0.25",
            "--limit",
            "40",
            "--run_name",
            "x",
        ]
    )
    assert (name, options["preset"], options["limit"], options["run_name"]) == ("pixels", "tiny", 40, "x")
    assert (train_cfg.steps, train_cfg.lr, train_cfg.flip, model_cfg.init_scale) == (7, 0.5, False, 0.25)
    assert train_cfg.batch_size == 16  # untouched fields keep the preset's values


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "name a model first"),
        (["gan"], "unknown model 'gan'"),
        (["pixels", "--stepz", "3"], "--stepz"),
        (["pixels", "--steps", "three"], "--steps expects int"),
        (["pixels", "--flip", "maybe"], "--flip expects true or false"),
        (["pixels", "--preset", "huge"], "unknown preset 'huge'"),
        (["pixels", "--steps"], "--steps needs a value"),
        (["pixels", "--minutes", "-1"], "--minutes must be a finite number of minutes >= 0"),
        (["pixels", "--minutes", "nan"], "--minutes must be a finite number of minutes >= 0"),
        (["pixels", "--minutes", "inf"], "--minutes must be a finite number of minutes >= 0"),
        (["pixels", "--minutes", "soon"], "--minutes expects float"),
        (
            ["pixels", "--minutes", "2", "--steps", "5"],
            "give --steps N for a fixed number of steps, or --minutes N",
        ),
    ],
)
def test_bad_command_lines_say_what_is_wrong(argv, message):
    with pytest.raises(UsageError, match=message):
        parse(argv)


def test_a_budget_is_refused_under_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UsageError, match="under torchrun give --steps"):
        parse(["pixels", "--minutes", "1"])


def test_the_help_tells_a_budget_from_a_hard_stop(capsys):
    assert main(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    minutes = [line for line in lines if line.startswith("  --minutes:")]
    stop = [line for line in lines if line.startswith("  --max_minutes:")]
    assert len(minutes) == len(stop) == 1
    assert "every schedule laid over them and complete" in minutes[0] and "hard wall-clock stop" in stop[0]


def test_invalid_values_exit_2_naming_the_field(capsys):
    assert main(["pixels", "--steps", "0"]) == 2
    assert "TrainConfig.steps must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("model, preset", [("pixels", "default"), ("ncsn", "paper"), ("nvae", "reference")])
def test_without_preset_a_model_takes_its_first(model, preset):
    assert parse([model])[1]["preset"] == preset == next(iter(MODELS[model].presets))
    assert parse([model])[1]["run_name"] == f"{model}-{preset}"


def test_a_run_from_the_command_line_writes_its_folder(tiny_cifar, isolated_outputs):
    assert main(["pixels", "--preset", "tiny", "--steps", "4", "--run_name", "cli", "--split", "train"]) == 0
    folder = isolated_outputs / "runs" / "cli"
    state = ckpt.load_checkpoint(ckpt.checkpoint_path(folder, 4))
    assert state["model_config"]["name"] == "pixels" and state["model_config"]["n_train"] == 160
    assert (folder / "metrics.jsonl").exists() and (folder / "samples" / "step_0000004.png").exists()


def test_a_cli_run_loads_back_although_its_config_holds_extra_keys(tiny_cifar, isolated_outputs):
    argv = [
        "nvae",
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--ckpt_every",
        "2",
        "--run_name",
        "nv",
        "--split",
        "train",
    ]
    assert main(argv) == 0
    model, info = load_run_model(isolated_outputs / "runs" / "nv", "nvae")
    assert (
        info["step"] == 2 and info["model_config"]["data"] and not model.training
    )  # "data": added by the CLI
    assert model.cfg == MODELS["nvae"].presets["tiny"][0]
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        load_run_model(isolated_outputs / "runs" / "nothing", "nvae")


def test_a_budgeted_cli_run_lays_its_schedule_over_the_steps_that_fit(tiny_cifar, isolated_outputs, capsys):
    argv = ["pixels", "--preset", "tiny", "--minutes", "0.1", "--run_name", "budget", "--split", "train"]
    argv += ["--schedule", "cosine", "--warmup_steps", "4", "--min_lr_ratio", "0.1", "--n_samples", "0"]
    assert main(argv) == 0
    folder = isolated_outputs / "runs" / "budget"
    plan = budget.read_plan(folder)
    out = capsys.readouterr().out
    assert f"done: pixels step {plan.steps}/{plan.steps}" in out and "training budget 0.1 min: planned" in out
    assert plan.probe_steps >= 1 and plan.actual["steps"] == plan.steps
    _, train_cfg = parse(argv)[2:]
    final = budget.fit_schedules(MODELS["pixels"].presets["tiny"][0], train_cfg, plan.steps)[1]
    assert final.warmup_steps == max(1, round(4 * plan.steps / 20))  # 4 of the preset's 20 steps: its share
    state = ckpt.load_checkpoint(ckpt.list_checkpoints(folder)[-1])
    assert state["step"] == plan.steps and state["train_config"] == dataclasses.asdict(final)
    assert {"preset", "split", "data", "n_train"} <= state[
        "model_config"
    ].keys()  # as a --steps run stores it
    last = files.read_jsonl(folder / "metrics.jsonl")[-1]
    assert last["step"] == plan.steps and last["lr"] == pytest.approx(lr_at(plan.steps - 1, final))
    assert lr_at(plan.steps, final) == pytest.approx(
        final.lr * final.min_lr_ratio
    )  # the cosine spans the run
    assert main(argv) == 0  # again: the finished run is loaded under its stored plan, not trained further
    assert budget.read_plan(folder) == plan and f"step {plan.steps}/{plan.steps}" in capsys.readouterr().out


def run_cli(args, env, nproc=None):
    prefix = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        if nproc
        else [sys.executable]
    )
    done = subprocess.run(
        prefix + ["-m", "lib.train", *args],
        env=env,
        cwd=repo_root(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_ddp_on_two_processes_matches_one_process_with_the_global_batch(tiny_cifar, isolated_outputs):
    """Two ranks of batch 8 average their gradients: the same updates as one process with batch 16."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo_root())}
    common = [
        "pixels",
        "--preset",
        "tiny",
        "--steps",
        "6",
        "--ckpt_every",
        "3",
        "--split",
        "train",
        "--init_scale",
        "0.1",
    ]
    done = run_cli(common + ["--batch_size", "8", "--run_name", "ddp"], env, nproc=2)
    run_cli(common + ["--batch_size", "16", "--run_name", "single"], env)
    assert "x2" in done.stdout  # the summary line comes from rank 0 only, once
    assert done.stdout.count("done: pixels") == 1
    ddp = ckpt.load_checkpoint(ckpt.checkpoint_path(isolated_outputs / "runs" / "ddp", 6))
    single = ckpt.load_checkpoint(ckpt.checkpoint_path(isolated_outputs / "runs" / "single", 6))
    assert len(ddp["rng"]) == 2 and not torch.equal(ddp["rng"][0]["torch"], ddp["rng"][1]["torch"])
    assert torch.allclose(ddp["model"]["logits"], single["model"]["logits"], atol=1e-5)
    halfway = ckpt.load_checkpoint(ckpt.checkpoint_path(isolated_outputs / "runs" / "ddp", 3))
    assert not torch.allclose(halfway["model"]["logits"], ddp["model"]["logits"], atol=1e-3)  # it trained
