"""Profiles as data (lib.workbook.profiles): one resolver, a reader's value never silently replaced, the configs each
notebook builds from its sizes (lib.workbook.setups), and the tables matching the notebooks' parameters cells."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import pytest

from lib import samplers
from lib.common import paths
from lib.common.paths import PROFILES
from lib.models import MODELS
from lib.workbook import findings, profiles, runner, setups
from lib.workbook.profiles import Default, Fixed, Row, Table

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK_OF = {  # profile table -> the notebook whose cell after `parameters` calls settings() with it
    "data": "00_data_exploration",
    "literature": "01_literature_review",
    "ncsn": "02_ncsn",
    "beta_vae": "03_beta_vae_sweep",
    "iwae": "04_iwae_k_comparison",
    "nvae": "05_nvae_stages",
    "comparison": "06_model_comparison",
}


def parameters_cell(name: str) -> str:
    cells = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]
    return next("".join(c["source"]) for c in cells if "parameters" in c["metadata"].get("tags", []))


def defaults(table: str, **given) -> dict:
    """The notebook's parameters as its cell sets them, with `given` on top (a reader's edits)."""
    namespace = {}
    exec(parameters_cell(NOTEBOOK_OF[table]), namespace)
    return {k: v for k, v in namespace.items() if not k.startswith("__")} | given


TOY = Table(
    why=("small", "one GPU", "hours"),
    rows=(
        Row("minutes", "MINUTES", (0.0, 4.0, 20.0), "budget"),
        Row("n_train", None, (512, None, None), "profile only"),
        Row("limit", "LIMIT", (Default(20), Fixed(None), Fixed(None)), "smoke-only knob"),
    ),
)


@pytest.mark.parametrize(
    "profile, given, used, replaced",
    [
        ("full", {"MINUTES": None, "LIMIT": None}, {"minutes": 20.0, "n_train": None, "limit": None}, {}),
        ("short", {"MINUTES": 30.0, "LIMIT": None}, {"minutes": 30.0, "n_train": None, "limit": None}, {}),
        (
            "smoke",
            {"MINUTES": 30.0, "LIMIT": None},
            {"minutes": 0.0, "n_train": 512, "limit": 20},
            {"MINUTES": (30.0, 0.0)},
        ),
        ("smoke", {"MINUTES": None, "LIMIT": 50}, {"minutes": 0.0, "n_train": 512, "limit": 50}, {}),
        (
            "full",
            {"MINUTES": None, "LIMIT": 50},
            {"minutes": 20.0, "n_train": None, "limit": None},
            {"LIMIT": (50, None)},
        ),
    ],
)
def test_a_readers_value_wins_in_short_and_full_and_smoke_says_what_it_replaced(
    profile, given, used, replaced
):
    values, found = profiles.resolve(TOY, given, profile)
    assert values == used and found == replaced


def test_a_table_parameter_missing_from_the_parameters_cell_is_a_clear_error():
    with pytest.raises(KeyError, match="parameters cell has no LIMIT.*default None"):
        profiles.resolve(TOY, {"MINUTES": None}, "full")


@pytest.mark.parametrize("table", sorted(profiles.TABLES))
def test_every_table_has_one_column_per_profile_and_matches_its_notebook(table):
    """A fourth profile is one more column: every row and `why` has exactly one entry per profile; every
    parameter a row names is declared in the notebook's parameters cell with a None default (so None means
    'the profile decides' and any value is a reader's), and the notebook calls settings() with this table."""
    rows = profiles.TABLES[table].rows
    assert (
        len(profiles.TABLES[table].why) == len(PROFILES) == len(profiles.PURPOSE) == len(profiles.RUN_SUFFIX)
    )
    assert all(len(row.values) == len(PROFILES) and row.why for row in rows)
    assert len({row.name for row in rows}) == len(rows)
    declared = defaults(table)
    for row in rows:
        if row.parameter:
            assert declared.get(row.parameter, "missing") is None, f"{row.parameter} must default to None"
    source = json.loads((NOTEBOOKS / f"{NOTEBOOK_OF[table]}.ipynb").read_text())
    assert any(f'profiles.settings("{table}", globals())' in "".join(c["source"]) for c in source["cells"])


@pytest.mark.parametrize("table", sorted(profiles.TABLES))
@pytest.mark.parametrize("profile", PROFILES)
def test_settings_build_every_notebook_in_every_profile(table, profile, capsys):
    S = profiles.settings(table, defaults(table, PROFILE=profile))
    out = capsys.readouterr().out
    assert S.profile == profile and S.smoke == (profile == "smoke") and paths.is_smoke() == S.smoke
    assert out.startswith(f"profile {profile} (PROFILE = '{profile}')") and f"{profile} sizes: " in out
    assert all(hasattr(S, row.name) for row in profiles.TABLES[table].rows)


def test_smoke_follows_the_profile_and_the_older_smoke_parameter_cannot_contradict_it(monkeypatch):
    monkeypatch.delenv("WORKBOOK_SMOKE", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert paths.resolve_profile() == ("smoke", "no CUDA GPU")  # where is_smoke() alone used to say False
    assert paths.resolve_profile("auto", smoke=True) == ("smoke", "SMOKE = True")
    assert paths.resolve_profile("auto", smoke=False) == ("full", "SMOKE = False")
    monkeypatch.setenv("WORKBOOK_PROFILE", "short")
    assert paths.resolve_profile("auto", smoke=False) == ("short", "$WORKBOOK_PROFILE=short")
    with pytest.raises(ValueError, match="SMOKE = True contradicts the full profile"):
        paths.resolve_profile("full", smoke=True)
    monkeypatch.setenv("WORKBOOK_PROFILE", "smoke")
    with pytest.raises(ValueError, match="SMOKE = False contradicts the smoke profile"):
        paths.resolve_profile("auto", smoke=False)


def test_an_adopted_profile_decides_is_smoke_until_it_is_dropped(monkeypatch):
    monkeypatch.setenv("WORKBOOK_SMOKE", "0")
    paths.adopt_profile("smoke")
    assert paths.is_smoke() and paths.output_dir("runs").parts[-2:] == ("smoke", "runs")
    assert (
        paths.profile() == "full"
    )  # resolving never reads the adopted profile: rerunning settings starts afresh
    paths.adopt_profile(None)
    assert not paths.is_smoke()
    with pytest.raises(ValueError, match="choose one of"):
        paths.adopt_profile("medium")


def test_the_printed_note_names_what_smoke_replaced_and_what_short_applied(capsys):
    profiles.settings("ncsn", defaults("ncsn", PROFILE="smoke", MAX_MINUTES=30.0, BATCH_SIZE=64))
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "smoke profile: MAX_MINUTES = 30.0 replaced by 0.0; BATCH_SIZE = 64 replaced by the default (None)"
        in out
    )
    assert "use the short or full profile to apply them" in out
    profiles.settings("ncsn", defaults("ncsn", PROFILE="short", MAX_MINUTES=30.0))
    out = " ".join(capsys.readouterr().out.split())
    assert "your values, applied: MAX_MINUTES = 30.0" in out and "replaced" not in out


def test_ncsn_short_profile_shrinks_the_ladder_with_technique_4_and_full_keeps_the_preset(capsys):
    preset, _ = MODELS["ncsn"].presets["reference"]
    short = profiles.settings("ncsn", defaults("ncsn", PROFILE="short"), quiet=True)
    gamma = (preset.sigma_max / 0.01) ** (1 / 9)  # ten levels from sigma_1 down to 0.01
    assert (short.model_cfg.n_sigmas, short.model_cfg.sigma_min, short.model_cfg.n_steps_each) == (
        10,
        0.01,
        20,
    )
    assert short.model_cfg.step_lr == pytest.approx(samplers.technique4_step_lr(20, gamma, 0.01))
    assert short.model_cfg.denoise and short.run_name == "ncsn-reference-short" and short.train_minutes == 4.0
    full = profiles.settings("ncsn", defaults("ncsn", PROFILE="full"), quiet=True)
    assert full.model_cfg == preset and full.run_name == "ncsn-reference" and full.train_minutes == 20.0
    # a reader's T in short: technique 4 is computed for that T, not for the profile's 20
    t30 = profiles.settings("ncsn", defaults("ncsn", PROFILE="short", N_STEPS_EACH=30), quiet=True)
    assert t30.model_cfg.step_lr == pytest.approx(samplers.technique4_step_lr(30, gamma, 0.01))
    smoke = profiles.settings("ncsn", defaults("ncsn", PROFILE="smoke", N_SIGMAS=12), quiet=True)
    assert smoke.model_cfg == MODELS["ncsn"].presets["tiny"][0] and smoke.train_cfg.steps == 40
    assert smoke.ladder_given == {} and smoke.n_fid == 0


def test_steps_given_mean_no_budget_and_a_bad_step_lr_is_refused(capsys):
    S = profiles.settings("beta_vae", defaults("beta_vae", PROFILE="full", STEPS=100))
    assert S.train_minutes == 0.0 and S.train_cfg.steps == 100
    assert "STEPS = 100 trains by steps: no training budget is probed" in capsys.readouterr().out
    with pytest.raises(ValueError, match="STEP_LR.*'technique 4'"):
        profiles.settings("ncsn", defaults("ncsn", PROFILE="full", STEP_LR="fast"), quiet=True)


def test_beta_vae_refuses_a_beta_sweep_under_the_capacity_objective():
    with pytest.raises(ValueError, match="CAPACITY_MAX"):
        profiles.settings("beta_vae", defaults("beta_vae", CAPACITY_MAX=20.0, BETAS=[1.0, 4.0]), quiet=True)


def test_iwae_settings_list_the_objectives_and_keep_dreg_off_the_plain_vae():
    S = profiles.settings(
        "iwae", defaults("iwae", PROFILE="full", IWAE_KS=[5, 50], VAE_KS=[1], DREG=True), quiet=True
    )
    assert S.settings == [("vae", 1), ("iwae", 5), ("iwae", 50)] and S.base_cfg.dreg
    assert S.train_cfg == replace(MODELS["iwae"].presets["default"][1], seed=0)
    assert (S.epochs, S.wall_minutes, S.k, S.n_ll) == (5.0, 5.0, 5_000, 1_000)


def test_describe_lists_every_size_in_every_profile_with_its_reason():
    text = profiles.describe("iwae")
    for profile in PROFILES:
        assert f"{profile}: " in text
    for row in profiles.TABLES["iwae"].rows:
        assert row.name in text and row.why.split(";")[0] in " ".join(text.split())
    assert "(unless set)" in profiles.describe("comparison") and "(fixed)" in profiles.describe("comparison")


def test_the_override_note_names_none_as_the_default():
    note = findings.overridden_parameters({"BATCH_SIZE": (64, None)}, "full")
    assert (
        note
        == "full profile: BATCH_SIZE = 64 replaced by the default (None) (the full sizes win; they do not apply in it)"
    )


def test_the_ncsnv2_ladder_comes_from_the_data_unless_the_reader_set_sigma_1(images):
    S = profiles.settings("ncsn", defaults("ncsn", PROFILE="full", PRESET="ncsnv2"), quiet=True)
    cfg, widest, note = setups.ncsn_ladder_from_data(S, images.numpy()[:16])
    assert cfg.sigma_max == pytest.approx(samplers.largest_pairwise_distance(images.numpy()[:16]))
    assert widest == cfg.sigma_max and note.startswith("NCSNv2 technique 1")
    given = profiles.settings(
        "ncsn", defaults("ncsn", PROFILE="full", PRESET="ncsnv2", SIGMA_MAX=20.0), quiet=True
    )
    cfg, _, note = setups.ncsn_ladder_from_data(given, images.numpy()[:16])
    assert cfg.sigma_max == 20.0 and note == ""


def test_the_tables_are_data_without_code():
    """Every cell of every table is a literal (a number, string, None, tuple) or a Fixed/Default marker."""
    source = (Path(profiles.__file__)).read_text()
    tables = next(
        n for n in ast.parse(source).body if isinstance(n, ast.Assign) and n.targets[0].id == "TABLES"
    )
    calls = {n.func.id for n in ast.walk(tables.value) if isinstance(n, ast.Call)}
    assert calls <= {"Table", "Row", "Fixed", "Default"}


CPU_BUDGET_MINUTES = 45  # the cpu profile's promise: each notebook in about 45 minutes on 2-4 cores


def cpu_training_minutes(S) -> float:
    """The training minutes a notebook's cpu settings commit to before evaluation (budgets end on time)."""
    if S.notebook == "beta_vae":
        return len(defaults("beta_vae")["BETAS"]) * S.train_minutes
    if S.notebook == "iwae":  # the equal-wall view is exact; the equal-epochs view is capped per model
        return len(S.settings) * S.wall_minutes
    if S.notebook == "nvae":
        return 2 * S.debug_minutes + S.full_minutes + S.continue_minutes
    return getattr(S, "train_minutes", 0.0)


@pytest.mark.parametrize("table", sorted(profiles.TABLES))
def test_the_cpu_profile_trains_for_real_within_its_budget_and_keys_its_outputs(table, capsys, tmp_path):
    S = profiles.settings(table, defaults(table, PROFILE="cpu"))
    assert S.profile == "cpu" and not S.smoke and S.run_suffix == "-cpu" and not paths.is_smoke()
    assert 0 <= cpu_training_minutes(S) <= 0.75 * CPU_BUDGET_MINUTES  # a quarter left for evaluation
    if hasattr(S, "preset"):
        assert S.preset != "tiny", "the cpu profile trains the real presets"
    if table in ("beta_vae", "iwae"):  # L_k with its k and images, at most 200,000 decoder passes per model
        assert S.k >= 100 and S.n_ll >= 200 and S.k * S.n_ll <= 200_000
    if hasattr(S, "train_cfg"):  # compiled where measured faster on the CPU: the VAEs, not NCSN's U-Net
        assert S.train_cfg.compile == (table in ("beta_vae", "iwae"))
    if table == "ncsn":  # the real U-Net, NCSN's L = 10 ladder, a bank that fd_c10 measures in full
        assert S.model_cfg.n_sigmas == 10 and S.train_cfg.batch_size == 32 and S.n_fid == S.n_bank == 200
        assert S.run_name == "ncsn-reference-cpu"
    if table == "nvae":
        assert all(str(folder).endswith("-cpu") for folder in S.runs.values())
        assert S.stage["full"][0].kl_warmup_steps == int(0.3 * S.stage["full"][1].steps)
    assert runner.executed_dir("cpu", tmp_path) == tmp_path / "notebooks" / "cpu"
    assert runner.executed_dir("full", tmp_path) == tmp_path / "notebooks"
    assert runner.executed_dir("smoke", tmp_path) == tmp_path / "smoke" / "notebooks"


@pytest.mark.parametrize("table", ["beta_vae", "iwae"])
def test_only_the_cpu_profile_compiles_the_vaes(table):
    for profile in ("smoke", "short", "full"):
        S = profiles.settings(table, defaults(table, PROFILE=profile), quiet=True)
        assert S.train_cfg.compile is False, profile
    assert profiles.settings(table, defaults(table, PROFILE="cpu"), quiet=True).train_cfg.compile is True


def test_a_reader_value_wins_in_the_cpu_profile():
    S = profiles.settings(
        "beta_vae", defaults("beta_vae", PROFILE="cpu", MAX_MINUTES=2.0, K_EVAL=100), quiet=True
    )
    assert S.train_minutes == 2.0 and S.k == 100 and S.n_ll == 300
