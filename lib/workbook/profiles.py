"""Every notebook's sizes in every profile, as data with the reason for each, and the one call that resolves them.

The cell after `parameters` in each notebook is `S = profiles.settings("<notebook>", globals())`: it resolves the
profile with `lib.common.paths.resolve_profile` (the one resolver; `S.smoke` follows from it), reads the
notebook's table below, returns the values the notebook uses (and, through lib.workbook.setups, the model and
training configs built from them), and prints in a few lines what was chosen and why.

A table row names a size, the parameter a reader sets for it (None: the profile alone decides), its value in each
profile (one column per profile, in `paths.PROFILES` order, so a fourth profile is one more column) and why.
A reader's value (a parameter that is not None) is used in cpu, short and full, where the column is only the
default; smoke keeps its own sizes, small enough for a CPU, and says in one printed line which given values it
replaced. A cell Fixed(value) is the profile's value even over a reader's in cpu, short or full (said so when it
replaces one); a cell Default(value) is only a default in smoke too (a reader's value wins there).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from types import SimpleNamespace

from ..common import paths
from ..common.paths import PROFILES
from . import findings, setups
from .results import N_BANK
from .setups import TECHNIQUE_4

# What each profile is for, whether a reader's value wins over its sizes, and its run-folder suffix.
PURPOSE = (  # smoke | short | full | cpu
    "the CPU and CI: small sizes that check the code, not the science",
    "one H100-class GPU, about 8 minutes a notebook with sampling and evaluation",
    "the budgets the parameters give, on your own GPU (hours)",
    "real runs on a 2-4 core CPU (bf16 where the CPU has it natively), about 45 minutes a notebook",
)
READER_WINS = (False, True, True, True)  # smoke's sizes must fit a CPU; the others apply what a reader sets
# smoke runs live in outputs/smoke/runs; short and cpu runs share outputs/runs (and their results
# outputs/results) with full ones, so they carry a suffix: results are keyed by profile
RUN_SUFFIX = ("", "-short", "", "-cpu")


@dataclass(frozen=True)
class Fixed:
    """The profile's value even over a reader's (the printed note says when it replaces one)."""

    value: object


@dataclass(frozen=True)
class Default:
    """The profile's value unless the reader sets one, in smoke too."""

    value: object


@dataclass(frozen=True)
class Row:
    name: str  # the attribute of the returned settings
    parameter: str | None  # the parameters-cell name a reader sets, or None
    values: tuple  # one per profile, in PROFILES order
    why: str


@dataclass(frozen=True)
class Table:
    why: tuple[str, ...]  # per profile: what this notebook does in it
    rows: tuple[Row, ...] = ()


# torch.compile per net where measured faster on this project's CPU (outputs/bench/README.md): the VAEs only
COMPILE_VAE_CPU = (
    "torch.compile of encoder and decoder; None: the preset's (off). cpu: on for the VAEs, measured on 2 Xeon "
    "cores (outputs/bench/cpu.json, batch 64): IWAE k = 1 / 5 / 50 train at 682 -> 726, 262 -> 301, 22 -> 29 "
    "images/s compiled, for 1.3 s (Beta-VAE) to 7 s (k = 50) of compilation (cpu-compile.json); the NVAE ran "
    "slower compiled and the U-Net gained 5% for 91 s of it, so they stay eager. Without a C++ compiler the "
    "run warns and stays eager"
)

# fmt: off
TABLES = {
    "data": Table(
        why=(
            "histograms and mean images on the first 5,000 training images; counts and duplicates on all",
            "every statistic on all 60,000 images (nothing trains, so short is full)",
            "every statistic on all 60,000 images",
            "every statistic on all 60,000 images (under a minute on 2 cores: nothing trains)",
        ),
        rows=(
            Row("n_stats", None, (5_000, None, None, None),
                "training images behind the histograms and mean images (a class-mixed prefix); None: all 50,000"),
        ),
    ),
    "literature": Table(
        why=(
            "the committed results and the smoke results (which check code, not science)",
            "the committed results only",
            "the committed results only",
            "the committed results only",
        ),
        rows=(
            Row("include_smoke_results", None, (True, False, False, False),
                "smoke results are listed only in smoke"),
        ),
    ),
    "ncsn": Table(
        why=(
            "the tiny preset, 40 steps on 512 images, 4 sigmas x 5 Langevin steps: the CPU in about a minute",
            "4 minutes of training are a few percent of the preset's 100k steps, so the ladder shrinks to L = 10 "
            "levels down to 0.01 (as NCSN's paper) with T = 20 Langevin steps per level and the step size "
            "NCSNv2's technique 4 gives for that T: 201 network evaluations per sample instead of 5,001, which "
            "leaves time for a 1,000-image bank",
            "the preset as given, 20 minutes of training, a 2,000-image bank",
            "the reference U-Net for 25 minutes at batch 32 (bf16 autocast on a CPU with native bf16: about "
            "11 images/s on 2 cores, so about 17,000 images, a third of an epoch), the ladder shrunk to L = "
            "10 levels down to 0.01 with T = 10 Langevin steps and technique 4's step size: 101 network "
            "evaluations per sample (about 40 a second), for a 200-image bank (about 8 minutes) and 36 shown"
            " samples",
        ),
        rows=(
            Row("preset", "PRESET", ("tiny", "reference", "reference", "reference"),
                "paper (RefineNet, L=10) | reference (U-Net, L=50) | ncsnv2 | tiny (the CPU)"),
            Row("train_minutes", "MAX_MINUTES", (0.0, 4.0, 20.0, 25.0),
                "training budget; a probe turns it into steps (0: STEPS, or the preset's); smoke trains by steps"),
            Row("steps", "STEPS", (40, None, None, None),
                "optimizer steps instead of a budget; None: from the budget"),
            Row("batch_size", "BATCH_SIZE", (None, None, None, 32), "None: the preset's (128; tiny: 16)"),
            Row("lr", "LR", (None, None, None, None), "None: the preset's"),
            Row("sigma_max", "SIGMA_MAX", (None, None, None, None), "sigma_1; None: the preset's"),
            Row("sigma_min", "SIGMA_MIN", (None, 0.01, None, 0.01), "sigma_L; None: the preset's"),
            Row("n_sigmas", "N_SIGMAS", (None, 10, None, 10), "L; None: the preset's"),
            Row("n_steps_each", "N_STEPS_EACH", (None, 20, None, 10),
                "T, Langevin steps per level; None: the preset's"),
            Row("step_lr", "STEP_LR", (None, TECHNIQUE_4, None, TECHNIQUE_4),
                "epsilon of Algorithm 1; None: the preset's; 'technique 4': NCSNv2's rule for the final L and T"),
            Row("denoise", None, (None, True, None, True),
                "the final denoising step x + sigma_L^2 s(x, sigma_L); None: the preset's"),
            Row("n_train", None, (512, None, None, None), "training images; None: the 45k fit split"),
            Row("n_show", "N_SAMPLES", (16, 64, 64, 36),
                "samples in the grids, trajectories and neighbour search"),
            Row("n_bank", "N_BANK_SAMPLES", (16, 1_000, N_BANK, 200),
                "samples stored in the bank for notebook 06"),
            Row("n_fid", "N_FID", (0, 1_000, 1_000, 200),
                "bank samples behind fd_c10 (at most the bank); smoke: none, fd_c10 is checked in 06"),
            Row("n_pairwise", None, (500, None, None, None),
                "images behind technique 1's largest pairwise distance; None: all training images"),
        ),
    ),
    "beta_vae": Table(
        why=(
            "the tiny preset, 40 steps on 512 training images, 256 test images, k = 64: the CPU in about a "
            "minute",
            "1 minute of training per beta (four betas), then L_k at k = 1,000 on 500 test images per beta: k "
            "decoder passes per image is the evaluation's whole cost, so it is cut 10x from the full k = 5,000 "
            "on 1,000 images",
            "8 minutes of training per beta, L_5000 on 1,000 test images",
            "6 minutes of training per beta at batch 64 (four betas; measured on 2 Xeon cores: about 330 "
            "images/s, about 1,800 steps = 2.5 epochs each), then L_500 on 300 test images per beta (150,000 "
            "decoder passes, about 2.2 minutes at some 1,100 a second); the ELBO terms and active units on all "
            "10,000 test images",
        ),
        rows=(
            Row("preset", None, ("tiny", "default", "default", "default"), "the tiny VAE fits a CPU"),
            Row("train_minutes", "MAX_MINUTES", (0.0, 1.0, 8.0, 6.0),
                "training budget per beta; a probe turns it into steps (0: STEPS); smoke trains by steps"),
            Row("steps", "STEPS", (40, None, None, None), "optimizer steps per beta instead of a budget"),
            Row("batch_size", "BATCH_SIZE", (32, None, None, 64), "None: the preset's (128)"),
            Row("lr", "LR", (None, None, None, None), "None: the preset's (1e-4)"),
            Row("latent_dim", "LATENT_DIM", (None, None, None, None), "L; None: the preset's (128)"),
            Row("log_every", None, (10, None, None, None), "steps per logged record; None: the preset's"),
            Row("compile", None, (False, None, None, True), COMPILE_VAE_CPU),
            Row("n_train", None, (512, None, None, None), "training images; None: the 45k fit split"),
            Row("n_test", None, (256, None, None, None), "test images; None: the 10k test split"),
            Row("k", "K_EVAL", (64, 1_000, 5_000, 500),
                "k of the importance-weighted estimate L_k of log p(x)"),
            Row("n_ll", "N_LIKELIHOOD", (128, 500, 1_000, 300),
                "test images for L_k (k decoder passes each); the other numbers use every test image"),
            Row("n_bank", None, (16, 1_000, N_BANK, 500), "samples kept as uint8 beside each results file"),
        ),
    ),
    "iwae": Table(
        why=(
            "the tiny preset, one epoch of 512 training images (16 steps of 32), 256 test images, k = 64, 0.05 "
            "minutes per model at equal wall time: about a minute on 2 CPU cores",
            "4 models in 2 views in about 8 minutes: 2 epochs each, 0.5 minutes each at equal wall time, L_k at "
            "k = 1,000 on 300 test images (k decoder passes per image dominate the evaluation)",
            "5 epochs and 5 minutes per model, L_5000 on 1,000 test images",
            "one epoch of 5,000 training images per model (k = 50 trains at about 8 images/s on 2 cores: 10 "
            "minutes), 2.5 minutes per model at equal wall time, L_500 on 200 test images per model (100,000"
            " decoder passes, about 1.5 minutes) and active units on 2,000: a test of the two claims at a "
            "few hundred steps",
        ),
        rows=(
            Row("preset", None, ("tiny", "default", "default", "default"), "the tiny VAE fits a CPU"),
            Row("epochs", "EPOCHS", (1.0, 2.0, 5.0, 1.0),
                "equal-epochs view: passes over the training images per model"),
            Row("max_minutes", "MAX_MINUTES", (0.0, 10.0, 10.0, 15.0),
                "cap per model in the equal-epochs view (0: none); a stopped run resumes"),
            Row("wall_minutes", "EQUAL_WALL_MINUTES", (0.05, 0.5, 5.0, 2.5),
                "equal-wall-time view: training minutes per model, turned into steps by a probe (0: skip)"),
            Row("batch_size", "BATCH_SIZE", (32, None, None, None), "None: the preset's (64)"),
            Row("lr", "LR", (None, None, None, None), "None: the preset's (1e-4)"),
            Row("latent_dim", "LATENT_DIM", (None, None, None, None), "L; None: the preset's (128)"),
            Row("log_every", None, (4, None, None, None), "steps per logged record; None: the preset's"),
            Row("ckpt_every", None, (8, None, None, None), "steps per checkpoint; None: the preset's"),
            Row("compile", None, (False, None, None, True), COMPILE_VAE_CPU),
            Row("n_train", None, (512, None, None, 5_000), "training images; None: the 45k fit split"),
            Row("n_test", None, (256, None, None, 2_000), "test images; None: the 10k test split"),
            Row("k", "K_EVAL", (64, 1_000, 5_000, 500),
                "k of the evaluation estimate, the same for every model"),
            Row("n_ll", "N_LIKELIHOOD", (128, 300, 1_000, 200),
                "test images for that estimate (k decoder passes each)"),
            Row("n_bank", None, (16, 1_000, N_BANK, 200), "samples kept as uint8 beside each results file"),
        ),
    ),
    "nvae": Table(
        why=(
            "the tiny config, a few dozen steps per stage on 512 images and k = 8, on the CPU",
            "the reference-like config (2 scales, 64 channels, 3 groups per scale): 0.75 minutes for each debug "
            "run, 3 for stage 2, 1 for stage 3, then L_100 on 1,000 test images",
            "10 minutes for each debug run, 45 for stage 2, 15 for stage 3, then L_100 on the whole test split",
            "the reference-like config (about 8 images/s on 2 cores with bf16): 2.5 minutes for each debug "
            "run, 18 for stage 2 (about 9,000 images: a fifth of an epoch), 6 for stage 3; the evaluation "
            "runs in fp32 at about 10 forward passes a second, so the validation ELBO is on 200 images and "
            "L_10 on 200 test images (2,000 passes, about 4 minutes); a 200-sample bank after a "
            "1,000-sample BatchNorm re-estimation",
        ),
        rows=(
            Row("preset", None, ("tiny", "reference", "reference", "reference"),
                "the tiny config fits a CPU"),
            Row("debug_minutes", "DEBUG_MINUTES", (0.0, 0.75, 10.0, 2.5),
                "budget of each stage-1 run; a probe turns minutes into steps; smoke trains by steps"),
            Row("full_minutes", "FULL_MINUTES", (0.0, 3.0, 45.0, 18.0),
                "budget of stage 2: its steps come from a probe, its KL warm-up is 30% of them"),
            Row("continue_minutes", "CONTINUE_MINUTES", (0.0, 1.0, 15.0, 6.0),
                "budget of stage 3 (fresh LR and KL warm-ups over its steps)"),
            Row("debug_steps", None, (24, 2_000, 2_000, 2_000), "stage-1 schedule a budget is fitted to"),
            Row("debug_warmup", None, (4, 200, 200, 200), "stage-1 LR warm-up steps (of debug_steps)"),
            Row("full_steps", None, (40, None, None, None), "stage-2 schedule; None: the preset's"),
            Row("continue_steps", "CONTINUE_STEPS", (20, 30_000, 30_000, 30_000),
                "stage-3 schedule the budget is fitted to: warm-ups keep their share of these steps"),
            Row("continue_warmup", None, (4, 1_000, 1_000, 1_000),
                "stage-3 LR warm-up steps (of continue_steps)"),
            Row("continue_kl_warmup", "CONTINUE_KL_WARMUP", (10, 3_000, 3_000, 3_000),
                "stage 3's fresh KL warm-up window within its steps"),
            Row("n_fit", None, (512, None, None, None), "training images; None: the 45k fit split"),
            Row("n_val", None, (64, 1_000, None, 200), "validation images for model selection; None: all 5k"),
            Row("n_test", None, (64, 1_000, None, 200), "test images, reported once; None: all 10k"),
            Row("k", "IW_K", (8, 100, 100, 10), "k of the importance-weighted bound (1000: 10x slower)"),
            Row("k_chunk", None, (8, 25, 25, 10), "posterior samples per decoder pass"),
            Row("eval_batch", None, (32, 100, 100, 50), "test images per evaluation batch"),
            Row("bn_batches", None, (2, 20, 20, 10), "BatchNorm re-estimation before sampling: batches"),
            Row("bn_batch", None, (32, 500, 500, 100), "BatchNorm re-estimation: prior samples per batch"),
            Row("n_bank", None, (64, 1_000, N_BANK, 200), "samples stored for notebook 06"),
        ),
    ),
    "comparison": Table(
        why=(
            "small sets so the whole notebook runs in about a minute on 2 CPU cores; the numbers check the "
            "code",
            "the calibration on 10,000 test images and every bank (short and full differ only in the models)",
            "the calibration on 10,000 test images and every bank",
            "fd_c10 against 10,000 training images, the calibration on 1,000 test images, FID/KID of each "
            "bank against as many training images as it holds (n vs n: at most 500 images through the "
            "Inception, about 40 s at 13 images/s; FID at n = 500 reads higher than at 50,000, see the floor"
            " column)",
        ),
        rows=(
            Row("n_reference", None, (5_000, None, None, 10_000),
                "training images behind the reference statistics; None: all 50,000"),
            Row("n_cal", None, (500, 10_000, 10_000, 1_000), "images per calibration measurement"),
            Row("n_spread", None,
                ((100, 250, 500), (1_000, 5_000, 10_000), (1_000, 5_000, 10_000), (250, 500, 1_000)),
                "sample counts of the spread study"),
            Row("n_repeats", None, (3, 5, 5, 3), "random subsets per sample count"),
            Row("n_bank_from_ckpt", None, (200, N_BANK, N_BANK, 200),
                "samples drawn from a checkpoint without a bank"),
            Row("n_fid", "N_FID_FULL", (0, 0, 0, 0),
                "FID/KID from this many fresh samples of each checkpoint (papers: 50,000); 0: from the banks"),
            Row("n_fid_bank", "N_FID_SMOKE", (Default(20), Fixed(None), Fixed(None), Fixed(None)),
                "bank images FID measures in smoke (about 13 images/s on 2 CPU cores); None: the whole bank"),
            Row("bn_batches", None, (2, 20, 20, 10),
                "NVAE: decoder BatchNorm re-estimated before sampling (05)"),
            Row("bn_batch", None, (32, 500, 500, 100),
                "NVAE BatchNorm re-estimation: prior samples per batch"),
        ),
    ),
}
# fmt: on


def resolve(table: Table, params: dict, profile: str) -> tuple[dict, dict]:
    """(values by row name, {parameter: (given, used)} for every parameter the profile replaced) for `profile`;
    a row whose parameter `params` lacks is an error naming it."""
    column = PROFILES.index(profile)
    values, replaced = {}, {}
    for row in table.rows:
        if row.parameter and row.parameter not in params:
            raise KeyError(
                f"the parameters cell has no {row.parameter} (row {row.name!r} of this notebook's profile table, "
                "lib.workbook.profiles.TABLES): add it, default None"
            )
        given, cell = params.get(row.parameter) if row.parameter else None, row.values[column]
        value = cell.value if isinstance(cell, (Fixed, Default)) else cell
        reader_wins = isinstance(cell, Default) or (READER_WINS[column] and not isinstance(cell, Fixed))
        used = given if reader_wins and given is not None else value
        if row.parameter and given is not None and used != given:
            replaced[row.parameter] = (given, used)
        values[row.name] = used
    return values, replaced


def settings(notebook: str, params: dict, quiet: bool = False) -> SimpleNamespace:
    """The values notebook `notebook` uses, for the profile that PROFILE and SMOKE in `params` (a notebook's
    globals()) resolve to: S.profile, S.smoke, S.run_suffix, one attribute per table row and what
    lib.workbook.setups builds from them. Adopts the profile for this process (paths.adopt_profile), so figure
    banners and output folders agree with S.smoke, and prints what was chosen and why (quiet=False)."""
    if notebook not in TABLES:
        raise KeyError(f"no profile table for {notebook!r}: choose one of {sorted(TABLES)}")
    requested = params.get("PROFILE", "auto")
    profile, source = paths.resolve_profile(requested, params.get("SMOKE"))
    values, replaced = resolve(TABLES[notebook], params, profile)
    column = PROFILES.index(profile)
    chosen = SimpleNamespace(
        notebook=notebook, profile=profile, smoke=profile == "smoke", run_suffix=RUN_SUFFIX[column], **values
    )
    paths.adopt_profile(profile)
    notes = setups.build(chosen, params)
    if not quiet:
        source = f"PROFILE = {requested!r}" if source == "asked for" else source
        print(explain(chosen, source, replaced, notes, applied(TABLES[notebook], params, replaced)))
    return chosen


def applied(table: Table, params: dict, replaced: dict) -> dict:
    """The parameters of `table` a reader set (not None) that the profile kept."""
    names = [row.parameter for row in table.rows if row.parameter]
    return {name: params[name] for name in names if params.get(name) is not None and name not in replaced}


def explain(
    chosen: SimpleNamespace, source: str, replaced: dict, notes: list[str] = (), kept: dict | None = None
) -> str:
    """The few lines `settings` prints: the profile and where it came from, what this notebook does in it, the
    sizes it set (None: the preset's or the whole split), the given parameters it kept and those it replaced."""
    column = PROFILES.index(chosen.profile)
    rows = TABLES[chosen.notebook].rows
    sizes = ", ".join(
        f"{r.name}={getattr(chosen, r.name)!r}" for r in rows if getattr(chosen, r.name) is not None
    )
    lines = [
        f"profile {chosen.profile} ({source}): {PURPOSE[column]}",
        f"{chosen.profile} sizes: {TABLES[chosen.notebook].why[column]}",
        *([f"chosen: {sizes}"] if sizes else []),
        *([f"your values, applied: {', '.join(f'{k} = {v!r}' for k, v in kept.items())}"] if kept else []),
        *([findings.overridden_parameters(replaced, chosen.profile)] if replaced else []),
        *notes,
    ]
    return "\n".join(textwrap.fill(line, 110, subsequent_indent="  ") for line in lines)


def describe(notebook: str) -> str:
    """The notebook's whole table as text: every size in every profile, with the parameter that sets it and why."""
    table = TABLES[notebook]
    lines = [f"{p}: {why}" for p, why in zip(PROFILES, table.why)]
    for row in table.rows:
        cells = ", ".join(f"{p} {_shown(v)}" for p, v in zip(PROFILES, row.values))
        lines.append(f"{row.name} ({row.parameter or 'profile only'}): {cells}. {row.why}")
    return "\n".join(textwrap.fill(line, 110, subsequent_indent="  ") for line in lines)


def _shown(cell) -> str:
    if isinstance(cell, Default):
        return f"{cell.value!r} (unless set)"
    return f"{cell.value!r} (fixed)" if isinstance(cell, Fixed) else repr(cell)
