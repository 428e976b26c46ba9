"""One experiment of a notebook, from training to its results file: fit a family's run within a budget (or load
it), evaluate it with the estimate of the evaluation's cost printed first, and record it with the configs it
trained under. Notebooks 02-04 call these, so each code cell stays the story: which run, which numbers.

Likelihoods follow Burda et al. (2016): the importance-weighted bound L_k with k posterior samples per image,
in bits/dim = NLL / (3072 ln 2).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .. import data, metrics, viz
from ..common import files, paths
from ..models import beta_vae_tag
from ..train.config import TrainConfig
from ..train.loop import TrainResult
from . import budget, findings, results
from .training import train_or_load


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


def evaluate_vae(session: Session, model, **evaluate_args) -> dict:
    """lib.metrics.evaluate_vae of `model` on the session's test images (L_k, k = S.k, on the first S.n_ll), with
    the same evaluation noise for every model and its cost estimated from a few calls before it is spent."""
    k, n_ll, device = session.S.k, session.S.n_ll, session.device
    xb = data.to_float(session.x_test[:8], device)
    calls = budget.per_call(n_ll, 8) * budget.per_call(k, 500)
    estimate = budget.estimate_seconds(lambda: model.log_weights(xb, min(k, 500)), calls, device)
    torch.manual_seed(session.seed)
    with session.watch(f"evaluation (L_{k} on {n_ll} images)", estimate=estimate):
        return metrics.evaluate_vae(model, session.x_test, k, n_ll, device, **evaluate_args)


def beta_vae_run(session: Session, beta: float, prefix: str) -> Fitted:
    """Train (or load) notebook 03's Beta-VAE at `beta` into <prefix>-<beta_vae_tag><suffix> and evaluate its EMA
    weights on the test images; papermill can run one beta per execution."""
    S = session.S
    cfg = replace(S.base_cfg, beta=beta)
    name = f"{prefix}-{beta_vae_tag(cfg)}{S.run_suffix}"
    fitted = session.fit("beta_vae", cfg, S.train_cfg, name, S.train_minutes)
    model, step = fitted.result.ema.eval(), fitted.result.step
    fitted.evaluation = evaluate_vae(session, model, model_cfg=fitted.model_cfg, step=step)
    return fitted


def iwae_run(
    session: Session, objective: str, k: int, prefix: str, train_cfg, suffix: str = "", minutes: float = 0.0
) -> Fitted:
    """Train (or load) notebook 04's VAE (k-sample mean ELBO) or IWAE (L_k) at `k` into
    <prefix>-<objective>-k<k><suffix><profile suffix> and evaluate it with the shared L_K estimator; with
    `minutes`, a probe turns that budget into this model's steps (equal wall time, schedules complete)."""
    S = session.S
    cfg = replace(S.base_cfg, objective=objective, k=k, dreg=S.base_cfg.dreg and objective == "iwae")
    fitted = session.fit("iwae", cfg, train_cfg, f"{prefix}-{objective}-k{k}{suffix}{S.run_suffix}", minutes)
    fitted.evaluation = evaluate_vae(session, fitted.result.ema.eval())
    return fitted


def iwae_rows(runs: dict, n_train: int) -> list[dict]:
    """One row per (objective, k) -> Fitted of notebook 04: model, k, steps, epochs, minutes, the last logged
    training bound and the evaluation's numbers."""
    rows = []
    for (objective, k), fitted in runs.items():
        result = fitted.result
        bound = files.read_jsonl(Path(result.folder) / "metrics.jsonl")[-1]["bound"]
        epochs = result.step * fitted.train_cfg.batch_size / n_train
        rows.append(
            dict(
                model=f"{objective.upper()} k={k}",
                k=k,
                steps=result.step,
                epochs=epochs,
                minutes=result.wall_seconds / 60,
                train_bound=bound,
                **fitted.evaluation,
            )
        )
    return rows


VAE_COLUMNS = {  # the test numbers of notebooks 03 and 04: row key -> format spec
    "elbo": ".1f",
    "bpd_elbo": ".4f",
    "bpd_k": ".4f",
    "n_active": "d",
    "mse": ".5f",
}
BETA_COLUMNS = {"beta": "g", "reconstruction": ".1f", "kl": ".1f"}  # then the objective, then VAE_COLUMNS
IWAE_COLUMNS = {"model": "s", "steps": "d", "epochs": ".2f", "minutes": ".2f", "train_bound": ".1f"}


def iwae_table(rows: list[dict], S, copy: str) -> str:
    """Notebook 04's table of one view (equal epochs or equal wall time), with what its columns mean."""
    table = findings.format_table(rows, {**IWAE_COLUMNS, **VAE_COLUMNS}, smoke=S.smoke)
    return (
        f"{table}\n(train_bound: the training objective's last logged L_k, nats per image; bpd_k: L_{S.k} on "
        f"{S.n_ll} test images; {copy})"
    )


def _by_objective(rows: list[dict], objective: str) -> list[dict]:
    """The rows of one objective ('VAE' or 'IWAE'), ordered by k."""
    return sorted((r for r in rows if r["model"].split()[0] == objective), key=lambda r: r["k"])


def _k_series(rows: list[dict], key: str, iwae_label: str, vae_label: str) -> tuple[dict, dict]:
    """(IWAE line, VAE markers) of one column for metric_panels: IWAE joined over its ks, VAE as points."""
    iwae, vae = _by_objective(rows, "IWAE"), _by_objective(rows, "VAE")
    line = {iwae_label: [r[key] for r in iwae]} if iwae else {}
    points = {vae_label: ([r["k"] for r in vae], [r[key] for r in vae])} if vae else {}
    return line, points


def iwae_k_figure(rows: list[dict], S, copy: str, view: str = "equal epochs"):
    """Notebook 04's k comparison of one view in one figure: test bits/dim (L_{S.k}), active units and the last
    logged training bound against the training k, IWAE joined over its ks and the VAE (k-sample mean ELBO) as
    markers at its k on the same axes."""
    ks = [r["k"] for r in _by_objective(rows, "IWAE")]
    columns = [  # (column, panel title, y label)
        ("bpd_k", f"test L_{S.k} (lower is better)", f"test bits/dim (L_{S.k}, {copy})"),
        ("n_active", "active latent units", f"active units of {rows[0]['latent_dim']}"),
        ("train_bound", "training objective, last logged", "training bound [nats / image]"),
    ]
    panels, baselines = [], []
    for key, panel_title, ylabel in columns:
        line, points = _k_series(rows, key, "IWAE (trained on L_k)", "VAE (k-sample mean ELBO)")
        panels.append((panel_title, ylabel, line))
        baselines.append(points)
    title = f"IWAE and VAE against the training k ({view})"
    return viz.metric_panels(ks, panels, "training k (samples per image)", title, True, baselines)


def iwae_wall_figure(rows: list[dict], wall_rows: list[dict], S, copy: str):
    """Notebook 04's two views side by side: test bits/dim, optimizer steps and training minutes against the
    training k, at equal epochs and at equal wall time (IWAE joined over its ks, the VAE as markers, one colour
    per view)."""
    ks = [r["k"] for r in _by_objective(rows, "IWAE")]
    views = {
        f", equal epochs ({findings.counted(S.epochs, 'epoch', 'g')})": rows,
        f", equal wall time ({S.wall_minutes:g} min)": wall_rows,
    }
    columns = [
        ("bpd_k", f"test L_{S.k} (lower is better)", f"test bits/dim (L_{S.k}, {copy})"),
        ("steps", "optimizer steps taken", "optimizer steps per model"),
        ("minutes", "training time", "training wall time [min]"),
    ]
    panels, baselines = [], []
    for key, panel_title, ylabel in columns:
        parts = [
            _k_series(view_rows, key, f"IWAE{label}", f"VAE{label}") for label, view_rows in views.items()
        ]
        panels.append((panel_title, ylabel, {k: v for line, _ in parts for k, v in line.items()}))
        baselines.append({k: v for _, points in parts for k, v in points.items()})
    colours = {
        f"{m}{label}": f"C{i}" for i, label in enumerate(views) for m in ("IWAE", "VAE")
    }  # one per view
    title = "equal epochs against equal wall time: what each model trained and what it reached"
    return viz.metric_panels(ks, panels, "training k (samples per image)", title, True, baselines, colours)


@torch.no_grad()
def best_weight_gain(model, x, k: int, device) -> float:
    """How far the best of k importance weights lies above their mean, in nats per image (mean over x): max_i
    log w_i - mean_i log w_i; larger means a wider spread of weights."""
    log_w, _ = model.log_weights(data.to_float(x, device), k)
    return float((log_w.max(0).values - log_w.mean(0)).mean())


PER_UNIT_LISTS = ("unit_variance", "bpd_k_per_image")  # an evaluation's lists, kept out of the results file


def record_all(session: Session, runs, model_name: str) -> list[Path]:
    """Record every fitted run (results file and sample bank, drawn with seed + 1 as every bank is) and print
    where each went; the evaluation's per-unit variances stay out of the record."""
    paths_written = []
    for fitted in runs:
        numbers = {k: v for k, v in fitted.evaluation.items() if k not in PER_UNIT_LISTS}
        path = record(fitted, model_name, session.S, session.cifar, session.device, numbers, session.seed + 1)
        print(path)
        paths_written.append(path)
    return paths_written
