"""Profiles as plain data (lib.workbook.profiles): one resolver, a reader's value never silently replaced, and the
sizes matching the notebooks' parameters cells."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from lib.common import paths
from lib.common.paths import PROFILES
from lib.workbook import profiles, runner

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK_OF = {  # profile sizes -> the notebook whose cell after `parameters` calls settings() with them
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


TOY = {
    "why": {p: p for p in PROFILES},
    "minutes": dict(smoke=0.0, short=4.0, full=20.0, cpu=25.0, why="budget"),
    "n_train": dict(smoke=512, short=None, full=None, cpu=None, why="profile only"),
}


@pytest.mark.parametrize(
    "profile, given, used, replaced",
    [
        ("full", {"MINUTES": None}, {"minutes": 20.0, "n_train": None}, {}),
        ("short", {"MINUTES": 30.0}, {"minutes": 30.0, "n_train": None}, {}),
        ("cpu", {"MINUTES": 30.0}, {"minutes": 30.0, "n_train": None}, {}),
        ("smoke", {"MINUTES": 30.0}, {"minutes": 0.0, "n_train": 512}, {"MINUTES": (30.0, 0.0)}),
        ("smoke", {"MINUTES": 0.0}, {"minutes": 0.0, "n_train": 512}, {}),  # the same value replaces nothing
    ],
)
def test_a_readers_value_wins_outside_smoke_and_smoke_says_what_it_replaced(profile, given, used, replaced):
    values, found, kept = profiles.resolve(TOY, given, profile)
    assert values == used and found == replaced
    assert kept == ({} if profile == "smoke" or given["MINUTES"] is None else {"MINUTES": 30.0})


def test_a_size_without_a_parameter_is_the_profiles_alone():
    values, _, _ = profiles.resolve(TOY, {"n_train": 7, "N_TRAIN_X": 7}, "full")
    assert values["n_train"] is None  # only the upper-case name of a size sets it


@pytest.mark.parametrize("table", sorted(profiles.PROFILE_SIZES))
def test_every_size_has_a_value_per_profile_and_its_parameter_defaults_to_none(table):
    """A fifth profile is one more key: every size and `why` has exactly one entry per profile and a reason; a
    size settable by a parameter is declared in the notebook's parameters cell with a None default (None means
    'the profile decides'), and the notebook calls settings() with this table."""
    sizes = profiles.PROFILE_SIZES[table]
    assert set(sizes["why"]) == set(PROFILES) == set(profiles.PURPOSE) == set(profiles.RUN_SUFFIX)
    declared = defaults(table)
    for name, row in sizes.items():
        if name != "why":
            assert set(row) == {*PROFILES, "why"} and row["why"], name
            if name.upper() in declared:
                assert declared[name.upper()] is None, f"{name.upper()} must default to None"
    source = json.loads((NOTEBOOKS / f"{NOTEBOOK_OF[table]}.ipynb").read_text())
    assert any(f'profiles.settings("{table}", globals())' in "".join(c["source"]) for c in source["cells"])


@pytest.mark.parametrize("table", sorted(profiles.PROFILE_SIZES))
@pytest.mark.parametrize("profile", PROFILES)
def test_settings_resolve_every_notebook_in_every_profile(table, profile, capsys):
    S = profiles.settings(table, defaults(table, PROFILE=profile))
    out = capsys.readouterr().out
    assert S.profile == profile and S.smoke == (profile == "smoke") and paths.is_smoke() == S.smoke
    assert out.startswith(f"profile {profile} (PROFILE = '{profile}')") and f"{profile} sizes: " in out
    assert all(hasattr(S, name) for name in profiles.PROFILE_SIZES[table] if name != "why")
    assert S.run_suffix == profiles.RUN_SUFFIX[profile]


def test_smoke_follows_the_profile_and_the_older_smoke_parameter_cannot_contradict_it(monkeypatch):
    monkeypatch.delenv("WORKBOOK_SMOKE", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert paths.resolve_profile() == ("smoke", "no CUDA GPU")
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
    out = capsys.readouterr().out
    assert "MAX_MINUTES = 30.0 -> 0.0" in out and "BATCH_SIZE = 64 -> None" in out
    profiles.settings("ncsn", defaults("ncsn", PROFILE="short", MAX_MINUTES=30.0))
    out = capsys.readouterr().out
    assert "your values, applied: MAX_MINUTES = 30.0" in out and "replaced" not in out


def test_an_unknown_notebook_is_a_clear_error():
    with pytest.raises(KeyError, match="choose one of"):
        profiles.settings("gan", {})


def test_describe_lists_every_size_in_every_profile_with_its_reason():
    text = profiles.describe("iwae")
    for p in PROFILES:
        assert f"{p}: " in text
    for name, row in profiles.PROFILE_SIZES["iwae"].items():
        if name != "why":
            assert f"{name}: " in text and row["why"].split()[0] in text


def test_given_keeps_only_the_values_set():
    assert profiles.given(lr=None, steps=0, batch_size=32) == {"steps": 0, "batch_size": 32}


def test_the_sizes_are_data_without_code():
    """Every value of PROFILE_SIZES is a literal (number, string, None, tuple), a dict(...) of them or a named
    constant of the module: no computation hides in the tables."""
    tree = ast.parse(Path(profiles.__file__).read_text())
    sizes = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "PROFILE_SIZES")
    calls = {n.func.id for n in ast.walk(sizes.value) if isinstance(n, ast.Call)}
    assert calls <= {"dict"}
    names = {n.id for n in ast.walk(sizes.value) if isinstance(n, ast.Name)} - {"dict", "None"}
    assert names <= {"N_BANK", "TECHNIQUE_4", "COMPILE_VAE_CPU"}, names


CPU_HOURS = 2  # the cpu profile's promise: each notebook within about 2 hours on 2-4 cores


def cpu_training_minutes(S) -> float:
    """The training minutes a notebook's cpu sizes commit to before evaluation (budgets end on time)."""
    if S.notebook == "beta_vae":  # every beta, every training seed
        return len(defaults("beta_vae")["BETAS"]) * S.n_seeds * S.max_minutes
    if S.notebook == "iwae":  # per model and seed: the equal-wall view is exact, the equal-epochs view capped
        views = defaults("iwae")
        per_model = S.n_seeds * S.max_minutes + S.wall_seeds * S.equal_wall_minutes
        return (len(views["VAE_KS"]) + len(views["IWAE_KS"])) * per_model
    if S.notebook == "nvae":
        return 2 * S.debug_minutes + S.full_minutes + S.continue_minutes
    return getattr(S, "max_minutes", 0.0)


@pytest.mark.parametrize("table", sorted(profiles.PROFILE_SIZES))
def test_the_cpu_profile_trains_real_presets_within_its_hours_and_keys_its_outputs(table, tmp_path):
    S = profiles.settings(table, defaults(table, PROFILE="cpu"), quiet=True)
    assert S.profile == "cpu" and not S.smoke and S.run_suffix == "-cpu" and not paths.is_smoke()
    assert 0 <= cpu_training_minutes(S) <= 0.75 * 60 * CPU_HOURS  # a quarter left for evaluation
    if hasattr(S, "preset"):
        assert S.preset != "tiny", "the cpu profile trains the real presets"
    if table in ("beta_vae", "iwae"):  # L_k with its k and images, at most 200,000 decoder passes per model
        assert S.k_eval >= 100 and S.n_likelihood >= 200 and S.k_eval * S.n_likelihood <= 200_000
        assert S.compile is True  # compiled where measured faster on the CPU: the VAEs only
    assert runner.executed_dir("cpu", tmp_path) == tmp_path / "notebooks" / "cpu"
    assert runner.executed_dir("smoke", tmp_path) == tmp_path / "smoke" / "notebooks"


@pytest.mark.parametrize("table", ["beta_vae", "iwae"])
def test_only_the_cpu_profile_compiles_the_vaes(table):
    for profile in ("smoke", "short", "full"):
        assert not profiles.settings(table, defaults(table, PROFILE=profile), quiet=True).compile, profile


def test_a_reader_value_wins_in_the_cpu_profile():
    S = profiles.settings(
        "beta_vae", defaults("beta_vae", PROFILE="cpu", MAX_MINUTES=2.0, K_EVAL=100), quiet=True
    )
    assert S.max_minutes == 2.0 and S.k_eval == 100 and S.n_likelihood == 300


@pytest.mark.parametrize("table", ["beta_vae", "iwae"])
@pytest.mark.parametrize("profile", PROFILES)
def test_a_ranking_of_training_settings_has_three_seeds_in_every_profile_but_smoke(table, profile):
    S = profiles.settings(table, defaults(table, PROFILE=profile), quiet=True)
    assert S.n_seeds == 1 if profile == "smoke" else S.n_seeds >= 3
