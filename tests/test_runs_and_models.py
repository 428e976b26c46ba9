"""Run folders (paths, atomic writes, the JSON-lines log) and the independent-pixels baseline."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from lib.common import devices, files, paths
from lib.metrics import bits_per_dim
from lib.models import IndependentPixels, IndependentPixelsConfig
from lib.train import logger


def test_run_dir_rejects_paths_as_names():
    with pytest.raises(ValueError, match="plain folder name"):
        paths.run_dir("../escape")


def test_atomic_write_leaves_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    files.atomic_write_json(target, {"v": 1})
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        files.atomic_write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_read_jsonl_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"st')
    assert files.read_jsonl(path) == [{"step": 1}, {"step": 2}]


def test_smoke_flag(monkeypatch):
    monkeypatch.setenv("WORKBOOK_SMOKE", "True")
    assert paths.is_smoke()
    monkeypatch.setenv("WORKBOOK_SMOKE", "0")
    assert not paths.is_smoke()


@pytest.mark.parametrize(
    "cuda, mps, expected",
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_device_choice_is_cuda_then_mps_then_cpu_and_an_explicit_one_wins(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert devices.pick_device().type == expected
    assert devices.pick_device("cpu").type == "cpu"
    assert devices.pick_device("cuda:1") == torch.device("cuda", 1)  # named, even where CUDA is absent


def test_bits_per_dim_of_a_uniform_model_is_eight():
    assert bits_per_dim(3072 * math.log(256)) == pytest.approx(8.0)


def test_untrained_independent_pixels_is_exactly_uniform(images):
    model = IndependentPixels()
    loss, stats = model.loss(images.float() / 255, step=0)
    assert stats["bpd"].item() == pytest.approx(8.0, abs=1e-5)
    assert loss.item() == pytest.approx(math.log(256), abs=1e-5)


def test_independent_pixels_at_the_histogram_scores_the_empirical_entropy():
    """The ML fit is the per-subpixel histogram; its NLL is the summed per-subpixel entropy (closed form)."""
    levels = torch.randint(0, 4, (200, 3072))  # each subpixel takes 4 values
    counts = torch.zeros(3072, 256).scatter_add_(1, levels.T, torch.ones(3072, 200))
    freq = counts / 200
    model = IndependentPixels()
    with torch.no_grad():
        model.logits.copy_(torch.log(freq.clamp_min(1e-30)))
    x = levels.float().reshape(200, 3, 32, 32) / 255
    entropy = -(freq * torch.log(freq.clamp_min(1e-30))).sum()  # nats per image
    assert (-model.log_prob(x).mean()).item() == pytest.approx(entropy.item(), rel=1e-5)


def test_independent_pixels_samples_follow_the_logits():
    model = IndependentPixels()
    with torch.no_grad():
        model.logits.fill_(-1e4)
        model.logits[:, 17] = 0.0  # every subpixel certain to be level 17
    x = model.sample(3)
    assert x.shape == (3, 3, 32, 32) and torch.allclose(x, torch.full_like(x, 17 / 255))


def test_invalid_model_config_names_the_field():
    with pytest.raises(ValueError, match="init_scale"):
        IndependentPixelsConfig(init_scale=-1.0)


def test_wandb_without_a_key_records_offline_instead_of_prompting(tmp_path, monkeypatch):
    import sys
    import types

    seen = {}
    monkeypatch.setitem(
        sys.modules, "wandb", types.SimpleNamespace(init=lambda **kw: seen.update(kw) or "run")
    )
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert logger._start_wandb(tmp_path / "run", {}, False) == "run" and seen["mode"] == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "key")
    logger._start_wandb(tmp_path / "run", {}, False)
    assert seen["mode"] is None  # logged in: wandb's own default (online)
