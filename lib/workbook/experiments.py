"""One experiment of a notebook, from training to its results file: fit a family's run within a budget (or load
it), evaluate it with the estimate of the evaluation's cost printed first, and record it with the configs it
trained under. Notebooks 02-05 call these, so each code cell stays the story: which run, which numbers.

Likelihoods follow Burda et al. (2016): the importance-weighted bound L_k with k posterior samples per image,
in bits/dim = NLL / (3072 ln 2); NVAE's hierarchical bounds (Vahdat & Kautz 2020) are lib.metrics'.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .. import data, metrics
from ..common import paths
from ..models import reestimate_bn
from ..train.checkpoints import list_checkpoints
from ..train.config import TrainConfig
from ..train.loop import TrainResult
from . import budget, results
from .training import load_run_model, train_or_load


@dataclass
class Fitted:
    """One trained (or loaded) run with the configs it trained under (a budget's probe fits the schedules to the
    steps, so they may differ from the ones asked for), its training plan and, once evaluated, its numbers."""

    result: TrainResult
    model_cfg: object
    train_cfg: TrainConfig
    plan: budget.TrainingPlan | None = None
    evaluation: dict | None = None


def fit(
    name: str,
    model_cfg,
    train_cfg: TrainConfig,
    x_train,
    run,
    device,
    minutes: float = 0.0,
    watch: budget.Stopwatch | None = None,
    label: str = "training",
    **train_args,
) -> Fitted:
    """Train (or resume, or load) a run: with `minutes`, within that budget (budget.train_within: a probe, one
    re-plan from the run's own pace, every schedule laid over the steps that fit and complete; the plan, planned
    vs actual, is stored with the run and reused when it is loaded); minutes = 0 trains train_cfg.steps
    (train_or_load). train_args: data, seed, init_from and the stored extras (e.g. preset). The training is
    timed as `label` by `watch`."""
    plan = None
    with watch(label) if watch else nullcontext():
        if minutes:
            result, plan = budget.train_within(
                minutes, name, model_cfg, train_cfg, x_train, run, device, **train_args
            )
            model_cfg, train_cfg = budget.fitted_configs(model_cfg, train_cfg, plan.steps)
        else:
            result = train_or_load(name, model_cfg, train_cfg, x_train, run, device, **train_args)
    return Fitted(result, model_cfg, train_cfg, plan)


def record(fitted: Fitted, model_name: str, S, cifar, device, metrics: dict, seed: int, **extra) -> Path:
    """results.record_experiment for a fitted run of a notebook with settings S (lib.workbook.profiles): the
    experiment is the run folder's name; the configs, the preset, the bank size, the profile and the training
    plan come from `fitted` and S. Returns the results path."""
    return results.record_experiment(
        Path(fitted.result.folder).name,
        model_name=model_name,
        result=fitted.result,
        model_cfg=fitted.model_cfg,
        train_cfg=fitted.train_cfg,
        preset=S.preset,
        cifar=cifar,
        device=device,
        metrics=metrics,
        n_bank=S.n_bank,
        seed=seed,
        smoke=S.smoke,
        profile=S.profile,
        budget=fitted.plan and asdict(fitted.plan),
        **extra,
    )


@dataclass
class Session:
    """What one notebook's runs share: its settings S (lib.workbook.profiles), the data copy and the training and
    test images, the device, the stopwatch and the seed of weights, data order and evaluation noise."""

    S: object
    cifar: object
    x_train: object
    x_test: object
    device: object
    watch: budget.Stopwatch
    seed: int = 0

    def fit(self, name: str, model_cfg, train_cfg, run: str | Path, minutes: float, **args) -> Fitted:
        """`fit` on this session's training images (or x_train=...) into run folder `run`: a Path, or a run name
        (outputs/runs/<name>, smoke: outputs/smoke/runs/<name>)."""
        run = run if isinstance(run, Path) else paths.run_dir(run, smoke=self.S.smoke)
        args.setdefault("x_train", self.x_train)
        return fit(
            name,
            model_cfg,
            train_cfg,
            args.pop("x_train"),
            run,
            self.device,
            minutes,
            self.watch,
            data=self.cifar.describe(),
            seed=self.seed,
            **args,
        )


# --- notebook 05: NVAE in stages ----------------------------------------------------------------------------


def nvae_stage(
    session: Session, stage: str, run: str, x_train=None, init_from=None, **model_fields
) -> Fitted:
    """Train (or resume, or load) NVAE `stage` (debug | full | continue: S.stage's configs and budget) into
    S.runs[run] on x_train (None: the session's training images); model_fields change its model config (e.g.
    likelihood="gaussian") and init_from starts it from another run's weights."""
    model_cfg, train_cfg, minutes = session.S.stage[stage]
    return session.fit(
        "nvae",
        replace(model_cfg, **model_fields),
        train_cfg,
        session.S.runs[run],
        minutes,
        x_train=session.x_train if x_train is None else x_train,
        label=f"training ({run})",
        init_from=init_from,
    )


def validation_bpd(session: Session, model, x_val) -> float:
    """Model selection: the validation ELBO in bits/dim (the IW bound is kept for the test split), with the same
    z draws wherever it is measured, so one model's validation ELBO is one number in every cell that prints it."""
    torch.manual_seed(session.seed)
    batch = session.S.eval_batch
    return metrics.hierarchical_bounds(model, x_val, k=1, k_chunk=1, batch_size=batch)["bpd_elbo"]


def select_by_validation(
    session: Session, x_val, runs=("full", "continue")
) -> tuple[str, object, dict, dict]:
    """(name, model, checkpoint info, validation bits/dim of each) for the run among `runs` (those with a
    checkpoint) with the lowest validation ELBO; no checkpoint at all is a clear error."""
    found = [name for name in runs if list_checkpoints(session.S.runs[name])]
    if not found:
        raise FileNotFoundError(
            f"no checkpoint in the {' or '.join(runs)} run folders ({session.S.runs[runs[0]]}): run the stages "
            "that train them first (STAGES = 'full,eval')"
        )
    candidates = {name: load_run_model(session.S.runs[name], "nvae", session.device) for name in found}
    selection = {name: validation_bpd(session, model, x_val) for name, (model, _) in candidates.items()}
    best = min(selection, key=selection.get)
    return best, *candidates[best], selection


def nvae_test_bounds(session: Session, model) -> dict:
    """lib.metrics.hierarchical_bounds on the session's test images (ELBO and L_k, k = S.k), with its cost
    estimated from a few calls before it is spent."""
    S, x_test, device = session.S, session.x_test, session.device
    xb = data.to_float(x_test[: S.eval_batch], device)
    calls = budget.per_call(len(x_test), S.eval_batch) * budget.per_call(S.k, S.k_chunk)
    estimate = budget.estimate_seconds(lambda: model.log_weights(xb, S.k_chunk), calls, device)
    with session.watch(f"evaluation (L_{S.k} on {len(x_test):,} test images)", estimate=estimate):
        return metrics.hierarchical_bounds(model, x_test, k=S.k, k_chunk=S.k_chunk, batch_size=S.eval_batch)


def loaded_result(model, info: dict, folder) -> TrainResult:
    """A TrainResult for a model read back from its checkpoint (load_run_model's info): its step, wall time and
    the img/s they imply; the EMA weights are the model."""
    img_per_s = info["step"] * info["train_config"]["batch_size"] / max(info["wall_seconds"], 1e-9)
    return TrainResult(model, model, info["step"], info["wall_seconds"], img_per_s, 0, Path(folder))


def record_nvae(
    session: Session, model, info: dict, best: str, selection: dict, test: dict, active: int
) -> Path:
    """Notebook 05's results file for the selected weights (`best`, chosen by the validation ELBOs in
    `selection`): the test bounds, the KL per group and the active groups, with the bank for notebook 06 drawn at
    t = 1 after the decoder's BatchNorm statistics are re-estimated, as NVAE samples (on a copy: `model` keeps
    its own)."""
    S = session.S
    sampler = reestimate_bn(copy.deepcopy(model), 1.0, S.bn_batches, S.bn_batch)
    numbers = dict(
        test_bpd_iw=test["bpd_iw"],
        test_bpd_iw_se=test["bpd_iw_se"],
        test_bpd_elbo=test["bpd_elbo"],
        k=S.k,
        n_test=test["n_images"],
        val_bpd_elbo=selection,
        kl_per_group_nats=test["kl_per_group_nats"],
        active_groups=active,
    )
    return results.record_experiment(
        "nvae" + S.run_suffix,
        model_name="nvae",
        profile=S.profile,
        result=loaded_result(model, info, S.runs[best]),
        cifar=session.cifar,
        device=session.device,
        sampler=sampler,
        n_bank=S.n_bank,
        seed=session.seed + 1,
        smoke=S.smoke,
        config={"model": asdict(model.cfg), "train": info["train_config"], "selected": best},
        metrics=numbers,
    )
