"""The model and training configs each notebook builds from its resolved sizes (lib.workbook.profiles), with the
notebook's own parameters that no profile changes (SEED, BETAS, LIKELIHOOD, ...): the presets of lib.models
with the profile's sizes laid over them. `build` adds them to the settings and returns notes worth printing.

NCSN's ladder follows Song & Ermon (2019, 2020): a geometric ladder sigma_1 > ... > sigma_L, and NCSNv2's
technique 1 (sigma_1 from the data's largest pairwise distance) and technique 4 (step_lr for the chosen T).
"""

from __future__ import annotations

from dataclasses import fields, replace
from types import SimpleNamespace

from .. import samplers
from ..models import MODELS, check_beta_sweep, ncsnv2_config, objective_name

TECHNIQUE_4 = "technique 4"  # NCSN's step_lr from NCSNv2's technique 4 for the ladder and T it ends up with
LADDER_PARAMETERS = dict(
    sigma_max="SIGMA_MAX",
    sigma_min="SIGMA_MIN",
    n_sigmas="N_SIGMAS",
    n_steps_each="N_STEPS_EACH",
    step_lr="STEP_LR",
)  # NCSN's ladder fields and the parameters that set them


def build(S: SimpleNamespace, params: dict) -> list[str]:
    """Add the notebook's configs to S (in place); returns notes for the printed summary."""
    builder = {"ncsn": ncsn, "beta_vae": beta_vae, "iwae": iwae}.get(S.notebook)
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


def ncsn(S: SimpleNamespace, params: dict) -> list[str]:
    """S.model_cfg, S.train_cfg and S.run_name of notebook 02; S.ladder_given: the ladder values a reader set."""
    model_cfg, train_cfg = MODELS["ncsn"].presets[S.preset]
    ladder = given(
        sigma_max=S.sigma_max, sigma_min=S.sigma_min, n_sigmas=S.n_sigmas, n_steps_each=S.n_steps_each
    )
    model_cfg = replace(model_cfg, **ladder, **given(denoise=S.denoise))
    S.model_cfg = replace(model_cfg, step_lr=ncsn_step_lr(model_cfg, S.step_lr))
    S.ladder_given = {} if S.smoke else given(**{k: params[p] for k, p in LADDER_PARAMETERS.items()})
    fields = given(steps=S.steps, batch_size=S.batch_size, lr=S.lr)
    S.train_cfg = replace(train_cfg, seed=params["SEED"], max_minutes=0.0, **fields)
    S.n_fid = min(S.n_fid, S.n_bank)
    S.run_name = params["RUN_NAME"] or f"ncsn-{S.preset}{S.run_suffix}"
    return budget_or_steps(S)


def ladder_ratio(sigma_max: float, sigma_min: float, n_sigmas: int) -> float:
    """gamma = sigma_{i-1} / sigma_i of the geometric ladder (1 for a single level)."""
    return (sigma_max / sigma_min) ** (1 / (n_sigmas - 1)) if n_sigmas > 1 else 1.0


def ncsn_step_lr(cfg, step_lr) -> float:
    """The config's step_lr: `step_lr` as given, TECHNIQUE_4 for NCSNv2's rule at cfg's ladder and T, or None for
    the preset's."""
    if isinstance(step_lr, str) and step_lr != TECHNIQUE_4:
        raise ValueError(
            f"STEP_LR = {step_lr!r}: give a number, or {TECHNIQUE_4!r} (NCSNv2's rule for L and T)"
        )
    if step_lr == TECHNIQUE_4:
        gamma = ladder_ratio(cfg.sigma_max, cfg.sigma_min, cfg.n_sigmas)
        return samplers.technique4_step_lr(cfg.n_steps_each, gamma, cfg.sigma_min)
    return cfg.step_lr if step_lr is None else step_lr


def ncsn_ladder_from_data(S: SimpleNamespace, x_pairwise, device="cpu") -> tuple[object, float, str]:
    """(model config, largest pairwise distance, note) for images x_pairwise. The ncsnv2 preset without a given
    SIGMA_MAX takes sigma_1 from that distance (technique 1), then L and step_lr from techniques 2 and 4; a
    ladder value the reader set still wins. Other presets keep their ladder."""
    cfg = S.model_cfg
    if S.preset != "ncsnv2" or "sigma_max" in S.ladder_given:
        return cfg, samplers.largest_pairwise_distance(x_pairwise, device=device), ""
    fitted = ncsnv2_config(
        x_pairwise, base=cfg, n_steps_each=cfg.n_steps_each, sigma_min=cfg.sigma_min, limit=len(x_pairwise)
    )
    fitted = replace(fitted, **S.ladder_given)
    note = (
        f"NCSNv2 technique 1: sigma_1 = {fitted.sigma_max:.2f} (the preset assumed {cfg.sigma_max:g}); then "
        f"L = {fitted.n_sigmas}, step_lr = {fitted.step_lr:.3g} for T = {fitted.n_steps_each} (techniques 2 and "
        "4, or N_SIGMAS / STEP_LR where set)"
    )
    return fitted, fitted.sigma_max, note


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
