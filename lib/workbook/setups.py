"""The model and training configs each notebook builds from its resolved sizes (lib.workbook.profiles), with the
notebook's own parameters that no profile changes (SEED, BETAS, LIKELIHOOD, ...): the presets of lib.models
with the profile's sizes laid over them. `build` adds them to the settings and returns notes worth printing.
(Notebook 02 builds its NCSN configs in its own cells.)
"""

from __future__ import annotations

from dataclasses import fields, replace
from types import SimpleNamespace

from ..common import paths
from ..models import MODELS, check_beta_sweep, objective_name

NVAE_STAGES = ("debug", "full", "continue", "eval")
NVAE_RUNS = ("debug_gaussian", "debug_dmol", "full", "continue")


def build(S: SimpleNamespace, params: dict) -> list[str]:
    """Add the notebook's configs to S (in place); returns notes for the printed summary."""
    builder = {"beta_vae": beta_vae, "iwae": iwae, "nvae": nvae}.get(S.notebook)
    return builder(S, params) if builder else []


def given(**fields) -> dict:
    """The fields whose value is not None (None: keep the preset's)."""
    return {name: value for name, value in fields.items() if value is not None}


def budget_or_steps(S: SimpleNamespace, minutes_name: str = "train_minutes") -> list[str]:
    """A budget and STEPS exclude each other: with steps set (STEPS, or smoke's), no budget is probed."""
    if S.steps is None or not getattr(S, minutes_name):
        return []
    setattr(S, minutes_name, 0.0)
    return [f"STEPS = {S.steps} trains by steps: no training budget is probed"]


def beta_vae(S: SimpleNamespace, params: dict) -> list[str]:
    """S.base_cfg (beta set per run), S.train_cfg and S.objective of notebook 03; refuses a beta sweep under the
    capacity objective (it ignores beta)."""
    check_beta_sweep(params["BETAS"], params["CAPACITY_MAX"])
    base_cfg, train_cfg = MODELS["beta_vae"].presets[S.preset]
    extra = given(latent_dim=S.latent_dim)
    S.base_cfg = replace(
        base_cfg, likelihood=params["LIKELIHOOD"], capacity_max=params["CAPACITY_MAX"], **extra
    )
    fields = given(steps=S.steps, batch_size=S.batch_size, lr=S.lr, log_every=S.log_every, compile=S.compile)
    S.train_cfg = replace(train_cfg, seed=params["SEED"], max_minutes=0.0, **fields)
    S.objective = objective_name(S.base_cfg)
    notes = budget_or_steps(S)
    if S.objective == "capacity_elbo":
        notes.append(
            f"Capacity objective: E_q log p(x|z) - gamma |KL - C|, C rising to {params['CAPACITY_MAX']:g} nats; "
            "beta is not used."
        )
    return notes


def iwae(S: SimpleNamespace, params: dict) -> list[str]:
    """S.base_cfg, S.train_cfg and S.settings [(objective, k), ...] of notebook 04."""
    base_cfg, train_cfg = MODELS["iwae"].presets[S.preset]
    S.base_cfg = replace(base_cfg, dreg=params["DREG"], **given(latent_dim=S.latent_dim))
    fields = given(
        batch_size=S.batch_size,
        lr=S.lr,
        log_every=S.log_every,
        ckpt_every=S.ckpt_every,
        compile=S.compile,
    )
    S.train_cfg = replace(train_cfg, seed=params["SEED"], **fields)
    S.settings = [("vae", k) for k in params["VAE_KS"]] + [("iwae", k) for k in params["IWAE_KS"]]
    return []


def nvae(S: SimpleNamespace, params: dict) -> list[str]:
    """S.stages, S.temperatures, S.runs (stage -> run folder) and S.stage (stage -> (model config, train config,
    minutes)) of notebook 05: each stage's warm-ups keep their share of its steps."""
    S.stages = [s.strip() for s in params["STAGES"].split(",") if s.strip()]
    if set(S.stages) - set(NVAE_STAGES):
        raise ValueError(f"STAGES={params['STAGES']!r}: use {', '.join(NVAE_STAGES)} (comma-separated)")
    S.temperatures = [float(t) for t in params["TEMPERATURES"].split(",")]
    model_cfg, train_cfg = MODELS["nvae"].presets[S.preset]
    train_cfg = replace(train_cfg, seed=params["SEED"], max_minutes=0.0)
    debug = replace(train_cfg, steps=S.debug_steps, warmup_steps=S.debug_warmup)
    full = replace(train_cfg, steps=S.full_steps or train_cfg.steps)
    cont = replace(train_cfg, steps=S.continue_steps, warmup_steps=S.continue_warmup)
    S.stage = {
        "debug": (replace(model_cfg, kl_warmup_steps=debug.steps // 3), debug, S.debug_minutes),
        "full": (replace(model_cfg, kl_warmup_steps=int(0.3 * full.steps)), full, S.full_minutes),  # as NVAE
        "continue": (replace(model_cfg, kl_warmup_steps=S.continue_kl_warmup), cont, S.continue_minutes),
    }
    S.runs = {name: paths.run_dir(f"nvae_{name}{S.run_suffix}", smoke=S.smoke) for name in NVAE_RUNS}
    return []


def config_changes(cfg, preset, name: str = "config") -> str:
    """One line naming only the fields of dataclass `cfg` that differ from `preset` (the whole repr of a config
    says nothing a reader can find in it): `name: the preset's, except steps 20 (preset 10,000), ...`."""
    shown = lambda v: f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else repr(v)
    changed = [
        f"{f.name} {shown(getattr(cfg, f.name))} (preset {shown(getattr(preset, f.name))})"
        for f in fields(cfg)
        if getattr(cfg, f.name) != getattr(preset, f.name)
    ]
    return (
        f"{name}: the preset's, except {', '.join(changed)}"
        if changed
        else f"{name}: the preset's, unchanged"
    )


def preset_changes(S: SimpleNamespace, family: str, model_cfg=None) -> str:
    """What this notebook changed in its preset's configs (S.preset of `family`): the TrainConfig, and the model
    config when `model_cfg` is given, one line each."""
    preset_model, preset_train = MODELS[family].presets[S.preset]
    lines = [config_changes(S.train_cfg, preset_train, f"TrainConfig of preset {S.preset!r}")]
    if model_cfg is not None:
        lines.append(
            config_changes(model_cfg, preset_model, f"{type(model_cfg).__name__} of preset {S.preset!r}")
        )
    return "\n".join(lines)
