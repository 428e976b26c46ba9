"""Every notebook's sizes in every profile, as plain data, and the one call that resolves them.

`PROFILE_SIZES[notebook]` is a dict: "why" says what the notebook does in each profile, and every other entry is
one size, `dict(smoke=..., short=..., full=..., cpu=..., why=...)`: its value in each profile and the reason.
A size whose upper-case name is in the notebook's `parameters` cell (`max_minutes` <- MAX_MINUTES) can be set by
the reader: a value that is not None is used in cpu, short and full, where the profile's is only the default;
smoke keeps its own sizes, small enough for a CPU, and prints which given values it replaced. A size without a
parameter is the profile's alone.

The cell after `parameters` is `S = profiles.settings("<notebook>", globals())`: the profile (resolved by
`lib.common.paths.resolve_profile`), `S.smoke`, `S.run_suffix` and one attribute per size, printed in a few lines
with the reasons. The notebook builds its model and training configs from S in its own cells.
"""

from __future__ import annotations

import textwrap
from types import SimpleNamespace

from ..common import paths
from ..common.paths import PROFILES
from .results import N_BANK

PURPOSE = {  # what each profile is for
    "smoke": "the CPU and CI: small sizes that check the code, not the science",
    "short": "one H100-class GPU, about 8 minutes a notebook with sampling and evaluation",
    "full": "the budgets the parameters give, on your own GPU (hours)",
    "cpu": "real runs on a 2-4 core CPU (bf16 where the CPU has it natively), up to about 2 hours a notebook",
}
# smoke runs live in outputs/smoke/runs; short and cpu runs share outputs/runs (and their results outputs/results)
# with full ones, so they carry a suffix: results are keyed by profile
RUN_SUFFIX = {"smoke": "", "short": "-short", "full": "", "cpu": "-cpu"}
TECHNIQUE_4 = "technique 4"  # NCSN's step_lr from NCSNv2's technique 4 for the ladder and T it ends up with

# torch.compile per net where measured faster on this project's CPU (outputs/bench/README.md): the VAEs only
COMPILE_VAE_CPU = (
    "torch.compile of encoder and decoder; None: the preset's (off). cpu: on for the VAEs, measured on 2 Xeon "
    "cores (outputs/bench/cpu.json, batch 64): IWAE k = 1 / 5 / 50 train at 682 -> 726, 262 -> 301, 22 -> 29 "
    "images/s compiled, for 1.3 s (Beta-VAE) to 7 s (k = 50) of compilation (cpu-compile.json); the NVAE ran "
    "slower compiled and the U-Net gained 5% for 91 s of it, so they stay eager. Without a C++ compiler the "
    "run warns and stays eager"
)

# fmt: off
PROFILE_SIZES = {
    "data": {
        "why": {
            "smoke": "histograms and mean images on the first 5,000 training images; counts and duplicates "
                "on all",
            "short": "every statistic on all 60,000 images (nothing trains, so short is full)",
            "full": "every statistic on all 60,000 images",
            "cpu": "every statistic on all 60,000 images (under a minute on 2 cores: nothing trains)",
        },
        "n_stats": dict(smoke=5_000, short=None, full=None, cpu=None, why="training images behind the "
            "histograms and mean images (a class-mixed prefix); None: all 50,000"),
        "n_code": dict(smoke=1_000, short=None, full=None, cpu=None, why="test images whose code lengths "
            "(PNG, xz, the copy's own files) are measured; None: all 10,000 (about half a minute on 2 cores)"),
    },
    "literature": {
        "why": {
            "smoke": "the committed results and the smoke results (which check code, not science)",
            "short": "the committed results only",
            "full": "the committed results only",
            "cpu": "the committed results only",
        },
        "include_smoke_results": dict(smoke=True, short=False, full=False, cpu=False,
                why="smoke results are listed only in smoke"),
    },
    "ncsn": {
        "why": {
            "smoke": "the tiny preset, 40 steps on 512 images, 4 sigmas x 5 Langevin steps: the CPU in "
                "about a minute",
            "short": "4 minutes of training are a few percent of the preset's 100k steps, so the ladder "
                "shrinks to L = 10 levels down to 0.01 (as NCSN's paper) with T = 20 Langevin steps per "
                "level and the step size NCSNv2's technique 4 gives for that T: 201 network evaluations per "
                "sample instead of 5,001, which leaves time for a 1,000-image bank",
            "full": "the preset as given, 20 minutes of training, a 2,000-image bank",
            "cpu": "the reference U-Net for 25 minutes at batch 32 (bf16 autocast on a CPU with native "
                "bf16: about 11 images/s on 2 cores, so about 17,000 images, a third of an epoch), the "
                "ladder shrunk to L = 10 levels down to 0.01 with T = 10 Langevin steps and technique 4's "
                "step size: 101 network evaluations per sample (about 40 a second), for a 200-image bank "
                "(about 8 minutes) and 36 shown samples",
        },
        "preset": dict(smoke="tiny", short="reference", full="reference", cpu="reference",
                why="paper (RefineNet, L=10) | reference (U-Net, L=50) | ncsnv2 | tiny (the CPU)"),
        "max_minutes": dict(smoke=0.0, short=4.0, full=20.0, cpu=25.0, why="training budget; a probe turns "
            "it into steps (0: STEPS, or the preset's); smoke trains by steps"),
        "steps": dict(smoke=40, short=None, full=None, cpu=None, why="optimizer steps instead of a budget; "
            "None: from the budget"),
        "batch_size": dict(smoke=None, short=None, full=None, cpu=32, why="None: the preset's (128; tiny: "
            "16)"),
        "lr": dict(smoke=None, short=None, full=None, cpu=None, why="None: the preset's"),
        "sigma_max": dict(smoke=None, short=None, full=None, cpu=None, why="sigma_1; None: the preset's"),
        "sigma_min": dict(smoke=None, short=0.01, full=None, cpu=0.01, why="sigma_L; None: the preset's"),
        "n_sigmas": dict(smoke=None, short=10, full=None, cpu=10, why="L; None: the preset's"),
        "n_steps_each": dict(smoke=None, short=20, full=None, cpu=10, why="T, Langevin steps per level; "
            "None: the preset's"),
        "step_lr": dict(smoke=None, short=TECHNIQUE_4, full=None, cpu=TECHNIQUE_4,
                why="epsilon of Algorithm 1; None: the preset's; 'technique 4': NCSNv2's rule for the final "
                "L and T"),
        "denoise": dict(smoke=None, short=True, full=None, cpu=True, why="the final denoising step x + "
            "sigma_L^2 s(x, sigma_L); None: the preset's"),
        "n_train": dict(smoke=512, short=None, full=None, cpu=None, why="training images; None: the 45k fit "
            "split"),
        "n_samples": dict(smoke=16, short=64, full=64, cpu=36, why="samples in the grids, trajectories and "
            "neighbour search"),
        "n_bank_samples": dict(smoke=16, short=1_000, full=N_BANK, cpu=200, why="samples stored in the bank "
            "for notebook 06"),
        "n_fid": dict(smoke=0, short=1_000, full=1_000, cpu=200, why="bank samples behind fd_c10 (at most "
            "the bank); smoke: none, fd_c10 is checked in 06"),
        "n_pairwise": dict(smoke=500, short=None, full=None, cpu=None, why="images behind technique 1's "
            "largest pairwise distance; None: all training images"),
    },
    "beta_vae": {
        "why": {
            "smoke": "the tiny preset, 40 steps on 512 training images, 256 test images, k = 64, one seed per "
                "beta (so its verdicts over training seeds read 'not decidable'): the CPU in about a minute",
            "short": "0.5 minutes of training per run, four betas x 3 seeds (6 minutes), then L_k at k = 1,000 "
                "on 500 test images per run: k decoder passes per image is the evaluation's whole cost, so it "
                "is cut 10x from the full k = 5,000 on 1,000 images; 12 evaluations make it about 10 minutes",
            "full": "8 minutes of training per run (four betas x 3 seeds: 96 minutes), L_5000 on 1,000 test "
                "images",
            "cpu": "6 minutes of training per run at batch 64, four betas x 3 seeds = 72 minutes (measured on "
                "2 Xeon cores: about 330 images/s, about 1,800 steps = 2.5 epochs each), then L_500 on 300 "
                "test images per run (150,000 decoder passes, about 2.2 minutes at some 1,100 a second: 27 "
                "minutes for 12 runs); the ELBO terms and active units on all 10,000 test images; a sample "
                "bank for seed 0 only",
        },
        "preset": dict(smoke="tiny", short="default", full="default", cpu="default",
                why="the tiny VAE fits a CPU"),
        "max_minutes": dict(smoke=0.0, short=0.5, full=8.0, cpu=6.0, why="training budget per run (one beta, "
            "one seed); a probe turns it into steps (0: STEPS); smoke trains by steps"),
        "steps": dict(smoke=40, short=None, full=None, cpu=None, why="optimizer steps per run instead of a "
            "budget"),
        "n_seeds": dict(smoke=1, short=3, full=3, cpu=3, why="training seeds per beta (seed s: TrainConfig and "
            "weights seeded SEED + s, run folders with -s<s> for s > 0): ranking the betas needs their spread "
            "over training seeds, so at least 3; smoke's one seed checks the code"),
        "batch_size": dict(smoke=32, short=None, full=None, cpu=64, why="None: the preset's (128)"),
        "lr": dict(smoke=None, short=None, full=None, cpu=None, why="None: the preset's (1e-4)"),
        "latent_dim": dict(smoke=None, short=None, full=None, cpu=None, why="L; None: the preset's (128)"),
        "log_every": dict(smoke=10, short=None, full=None, cpu=None, why="steps per logged record; None: "
            "the preset's"),
        "compile": dict(smoke=False, short=None, full=None, cpu=True, why=COMPILE_VAE_CPU),
        "n_train": dict(smoke=512, short=None, full=None, cpu=None, why="training images; None: the 45k fit "
            "split"),
        "n_test": dict(smoke=256, short=None, full=None, cpu=None, why="test images; None: the 10k test "
            "split"),
        "k_eval": dict(smoke=64, short=1_000, full=5_000, cpu=500, why="k of the importance-weighted "
            "estimate L_k of log p(x)"),
        "n_likelihood": dict(smoke=128, short=500, full=1_000, cpu=300, why="test images for L_k (k decoder "
            "passes each); the other numbers use every test image"),
        "n_bank": dict(smoke=16, short=1_000, full=N_BANK, cpu=500, why="samples kept as uint8 beside the "
            "results file of seed 0 (the other seeds' results files have no bank)"),
    },
    "iwae": {
        "why": {
            "smoke": "the tiny preset, one epoch of 512 training images (16 steps of 32), 256 test images, "
                "k = 64, 0.05 minutes per model at equal wall time, one seed per model (so its verdicts over "
                "training seeds read 'not decidable'): about a minute on 2 CPU cores",
            "short": "4 models x 3 seeds at equal epochs (1 epoch each: 1.5x the images of the former single "
                "seed at 2 epochs), one seed each at equal wall time (0.5 minutes), L_k at k = 1,000 on 300 "
                "test images (k decoder passes per image dominate the 16 evaluations): about 12 minutes",
            "full": "5 epochs and 5 minutes per model, 3 seeds in both views, L_5000 on 1,000 test images",
            "cpu": "seeds where the claims are tested: 4 models x 3 seeds at equal epochs (Burda et al.'s "
                "protocol; one epoch of 4,000 training images, 63 steps: k = 50 trains at about 12 images/s "
                "on 2 cores, 5.7 minutes, under the 6.5-minute cap) and one seed at equal wall time (2.5 "
                "minutes each, a second view checked over the same images only): at most 4 x (3 x 6.5 + 2.5) "
                "= 88 minutes of training by the caps, about 30 as run; L_500 on 200 test images per model "
                "(100,000 decoder passes, about 1.5 minutes, 16 models) and active units on 2,000: a test of "
                "the two claims at a few dozen steps",
        },
        "preset": dict(smoke="tiny", short="default", full="default", cpu="default",
                why="the tiny VAE fits a CPU"),
        "epochs": dict(smoke=1.0, short=1.0, full=5.0, cpu=1.0, why="equal-epochs view: passes over the "
            "training images per model"),
        "max_minutes": dict(smoke=0.0, short=10.0, full=10.0, cpu=6.5, why="cap per run in the "
            "equal-epochs view (0: none); a stopped run resumes"),
        "equal_wall_minutes": dict(smoke=0.05, short=0.5, full=5.0, cpu=2.5,
                why="equal-wall-time view: training minutes per model, turned into steps by a probe (0: "
                "skip)"),
        "n_seeds": dict(smoke=1, short=3, full=3, cpu=3, why="training seeds per model in the equal-epochs "
            "view, where Burda et al.'s claims are ranked over training seeds (seed s: TrainConfig and weights "
            "seeded SEED + s, run folders with -s<s> for s > 0): at least 3; smoke's one seed checks the code"),
        "wall_seeds": dict(smoke=1, short=1, full=3, cpu=1, why="training seeds per model in the equal-wall "
            "view: one (its k comparison paired over the same test images, seed verdicts not decidable) where "
            "the budget is tight, 3 in full"),
        "batch_size": dict(smoke=32, short=None, full=None, cpu=None, why="None: the preset's (64)"),
        "lr": dict(smoke=None, short=None, full=None, cpu=None, why="None: the preset's (1e-4)"),
        "latent_dim": dict(smoke=None, short=None, full=None, cpu=None, why="L; None: the preset's (128)"),
        "log_every": dict(smoke=4, short=None, full=None, cpu=None, why="steps per logged record; None: the "
            "preset's"),
        "ckpt_every": dict(smoke=8, short=None, full=None, cpu=None, why="steps per checkpoint; None: the "
            "preset's"),
        "compile": dict(smoke=False, short=None, full=None, cpu=True, why=COMPILE_VAE_CPU),
        "n_train": dict(smoke=512, short=None, full=None, cpu=4_000, why="training images; None: the 45k "
            "fit split"),
        "n_test": dict(smoke=256, short=None, full=None, cpu=2_000, why="test images; None: the 10k test "
            "split"),
        "k_eval": dict(smoke=64, short=1_000, full=5_000, cpu=500, why="k of the evaluation estimate, the "
            "same for every model"),
        "n_likelihood": dict(smoke=128, short=300, full=1_000, cpu=200, why="test images for that estimate "
            "(k decoder passes each)"),
        "n_bank": dict(smoke=16, short=1_000, full=N_BANK, cpu=200, why="samples kept as uint8 beside each "
            "results file"),
    },
    "nvae": {
        "why": {
            "smoke": "the tiny config, a few dozen steps per stage on 512 images and k = 8, on the CPU",
            "short": "the reference-like config (2 scales, 64 channels, 3 groups per scale): 0.75 minutes "
                "for each debug run, 3 for stage 2, 1 for stage 3, then L_100 on 1,000 test images",
            "full": "10 minutes for each debug run, 45 for stage 2, 15 for stage 3, then L_100 on the whole "
                "test split",
            "cpu": "the reference-like config (about 8 images/s on 2 cores with bf16): 2.5 minutes for each "
                "debug run, 18 for stage 2 (about 9,000 images: a fifth of an epoch), 6 for stage 3; the "
                "evaluation runs in fp32 at about 10 forward passes a second, so the validation ELBO is on "
                "200 images and L_10 on 200 test images (2,000 passes, about 4 minutes); a 200-sample bank "
                "after a 1,000-sample BatchNorm re-estimation",
        },
        "preset": dict(smoke="tiny", short="reference", full="reference", cpu="reference",
                why="the tiny config fits a CPU"),
        "debug_minutes": dict(smoke=0.0, short=0.75, full=10.0, cpu=2.5, why="budget of each stage-1 run; a "
            "probe turns minutes into steps; smoke trains by steps"),
        "full_minutes": dict(smoke=0.0, short=3.0, full=45.0, cpu=18.0, why="budget of stage 2: its steps "
            "come from a probe, its KL warm-up is 30% of them"),
        "continue_minutes": dict(smoke=0.0, short=1.0, full=15.0, cpu=6.0, why="budget of stage 3 (fresh LR "
            "and KL warm-ups over its steps)"),
        "debug_steps": dict(smoke=24, short=2_000, full=2_000, cpu=2_000, why="stage-1 schedule a budget is "
            "fitted to"),
        "debug_warmup": dict(smoke=4, short=200, full=200, cpu=200, why="stage-1 LR warm-up steps (of "
            "debug_steps)"),
        "full_steps": dict(smoke=40, short=None, full=None, cpu=None, why="stage-2 schedule; None: the "
            "preset's"),
        "continue_steps": dict(smoke=20, short=30_000, full=30_000, cpu=30_000,
                why="stage-3 schedule the budget is fitted to: warm-ups keep their share of these steps"),
        "continue_warmup": dict(smoke=4, short=1_000, full=1_000, cpu=1_000,
                why="stage-3 LR warm-up steps (of continue_steps)"),
        "continue_kl_warmup": dict(smoke=10, short=3_000, full=3_000, cpu=3_000,
                why="stage 3's fresh KL warm-up window within its steps"),
        "n_fit": dict(smoke=512, short=None, full=None, cpu=None, why="training images; None: the 45k fit "
            "split"),
        "n_val": dict(smoke=64, short=1_000, full=None, cpu=200, why="validation images for model "
            "selection; None: all 5k"),
        "n_test": dict(smoke=64, short=1_000, full=None, cpu=200, why="test images, reported once; None: "
            "all 10k"),
        "iw_k": dict(smoke=8, short=100, full=100, cpu=10, why="k of the importance-weighted bound (1000: "
            "10x slower)"),
        "k_chunk": dict(smoke=8, short=25, full=25, cpu=10, why="posterior samples per decoder pass"),
        "eval_batch": dict(smoke=32, short=100, full=100, cpu=50, why="test images per evaluation batch"),
        "bn_batches": dict(smoke=2, short=20, full=20, cpu=10, why="BatchNorm re-estimation before "
            "sampling: batches"),
        "bn_batch": dict(smoke=32, short=500, full=500, cpu=100, why="BatchNorm re-estimation: prior "
            "samples per batch"),
        "n_bank": dict(smoke=64, short=1_000, full=N_BANK, cpu=200, why="samples stored for notebook 06"),
    },
    "comparison": {
        "why": {
            "smoke": "small sets so the whole notebook runs in about two minutes on 2 CPU cores; the numbers "
                "check the code",
            "short": "the calibration on 10,000 test images; every model at the n every bank holds, against "
                "10,000 training images, beside 5 subsets of n of the test split (short and full differ only in "
                "the models)",
            "full": "the calibration on 10,000 test images; every model at the n every bank holds, against "
                "10,000 training images, beside 5 subsets of n of the test split",
            "cpu": "fd_c10 against 10,000 training images, the calibration on 1,000 test images; every model's "
                "distances at the n every bank holds (200 today) against 2,000 training images, beside the floor "
                "of 5 random subsets of n of the first 2,000 test images (4,000 real and 200 samples a model "
                "through the Inception, about 13 images/s on 2 cores: about 9 minutes for 14 models)",
        },
        "n_reference": dict(smoke=5_000, short=None, full=None, cpu=10_000, why="training images behind the "
            "reference statistics; None: all 50,000"),
        "n_cal": dict(smoke=500, short=10_000, full=10_000, cpu=1_000, why="images per calibration "
            "measurement"),
        "n_spread": dict(smoke=(100, 250, 500), short=(1_000, 5_000, 10_000), full=(1_000, 5_000, 10_000), cpu=(250, 500, 1_000),
                why="sample counts of the spread study"),
        "n_repeats": dict(smoke=3, short=5, full=5, cpu=3, why="random subsets per sample count"),
        "n_bank_from_ckpt": dict(smoke=200, short=N_BANK, full=N_BANK, cpu=200,
                why="samples drawn from a checkpoint without a bank"),
        "n_fid_full": dict(smoke=0, short=0, full=0, cpu=0, why="FID/KID from this many fresh samples of "
            "each checkpoint (papers: 50,000); 0: from the banks"),
        "n_compare": dict(smoke=None, short=None, full=None, cpu=None, why="samples per model behind every "
            "distance (one n for all, issue 36); None: the largest every model's samples reach"),
        "n_fid_reference": dict(smoke=50, short=10_000, full=10_000, cpu=2_000, why="training images behind "
            "the FID/KID/precision-recall reference, the same for every model and the floor"),
        "n_floor_pool": dict(smoke=50, short=10_000, full=10_000, cpu=2_000, why="test images the floor's "
            "random subsets of n are drawn from (the first ones of the split)"),
        "n_floor_repeats": dict(smoke=5, short=5, full=5, cpu=5, why="random subsets of n real test images "
            "per floor (mean ± sd; issue 36 asks for at least 5)"),
        "bn_batches": dict(smoke=2, short=20, full=20, cpu=10, why="NVAE: decoder BatchNorm re-estimated "
            "before sampling (05)"),
        "bn_batch": dict(smoke=32, short=500, full=500, cpu=100, why="NVAE BatchNorm re-estimation: prior "
            "samples per batch"),
    },
}
# fmt: on


def resolve(sizes: dict, params: dict, profile: str) -> tuple[dict, dict, dict]:
    """(values by size name, {PARAMETER: (given, used)} that the profile replaced, {PARAMETER: value} it kept)
    for `profile`: a reader's value (a parameter that is not None) wins everywhere but in smoke."""
    values, replaced, kept = {}, {}, {}
    for name, row in sizes.items():
        if name == "why":
            continue
        parameter = name.upper()
        given = params.get(parameter)
        values[name] = row[profile]
        if given is None:
            continue
        if profile == "smoke":
            if given != row[profile]:
                replaced[parameter] = (given, row[profile])
        else:
            values[name], kept[parameter] = given, given
    return values, replaced, kept


def settings(notebook: str, params: dict, quiet: bool = False) -> SimpleNamespace:
    """The sizes notebook `notebook` uses in the profile that PROFILE and SMOKE in `params` (a notebook's
    globals()) resolve to: S.profile, S.smoke, S.run_suffix and one attribute per size. Adopts the profile for
    this process (paths.adopt_profile), so figure banners and output folders agree with S.smoke, and prints what
    was chosen and why (unless quiet)."""
    if notebook not in PROFILE_SIZES:
        raise KeyError(f"no profile sizes for {notebook!r}: choose one of {sorted(PROFILE_SIZES)}")
    requested = params.get("PROFILE", "auto")
    profile, source = paths.resolve_profile(requested, params.get("SMOKE"))
    values, replaced, kept = resolve(PROFILE_SIZES[notebook], params, profile)
    paths.adopt_profile(profile)
    if not quiet:
        source = f"PROFILE = {requested!r}" if source == "asked for" else source
        chosen = ", ".join(f"{k}={v!r}" for k, v in values.items() if v is not None)
        lines = [
            f"profile {profile} ({source}): {PURPOSE[profile]}",
            f"{profile} sizes: {PROFILE_SIZES[notebook]['why'][profile]}",
            f"chosen: {chosen}",
            *([f"your values, applied: {_pairs(kept)}"] if kept else []),
            *([overridden(replaced)] if replaced else []),
        ]
        print("\n".join(textwrap.fill(line, 110, subsequent_indent="  ") for line in lines))
    smoke = profile == "smoke"
    return SimpleNamespace(
        notebook=notebook, profile=profile, smoke=smoke, run_suffix=RUN_SUFFIX[profile], **values
    )


def overridden(replaced: dict) -> str:
    """The one line naming every given parameter the smoke profile replaced, with the value it used instead."""
    pairs = ", ".join(f"{name} = {given!r} -> {used!r}" for name, (given, used) in replaced.items())
    return f"smoke keeps its CPU sizes, so it replaced: {pairs} (choose a real profile to use them)"


def _pairs(values: dict) -> str:
    return ", ".join(f"{k} = {v!r}" for k, v in values.items())


def given(**fields) -> dict:
    """The fields whose value is not None (None: keep the preset's), for dataclasses.replace."""
    return {name: value for name, value in fields.items() if value is not None}


def describe(notebook: str) -> str:
    """The notebook's sizes as text: every size in every profile, the parameter that sets it (if any) and why."""
    sizes = PROFILE_SIZES[notebook]
    lines = [f"{p}: {sizes['why'][p]}" for p in PROFILES]
    for name, row in sizes.items():
        if name != "why":
            cells = ", ".join(f"{p} {row[p]!r}" for p in PROFILES)
            lines.append(f"{name}: {cells}. {row['why']}")
    return "\n".join(textwrap.fill(line, 110, subsequent_indent="  ") for line in lines)
