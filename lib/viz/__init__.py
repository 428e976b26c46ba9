"""Figures, returned and never shown (a notebook displays them), stamped with a banner in smoke mode.

    core     the smoke stamp, PNG display, image grids, labelled grids, log axes, saving
    data     the data itself: per-class grids, class counts, channel histograms, mean images
    curves   training curves from metrics.jsonl (units, smoothing); several runs on shared axes
    vae      reconstructions, traversals, interpolations, rate-distortion, NVAE's group KL; sweeps as one
             labelled grid (rows = model) and metrics against a setting in panels with baselines
    compare  the model comparison: fd_c10 calibration, sample panels, per-model views, the FID floor

Every public figure function of the three is importable from `lib.viz` itself (`viz.labelled_grid`,
`viz.rate_distortion`, `viz.model_comparison`).
"""

from __future__ import annotations

from . import compare, core, curves, data, vae
from .compare import *  # noqa: F403
from .core import *  # noqa: F403
from .curves import *  # noqa: F403
from .data import *  # noqa: F403
from .vae import *  # noqa: F403

__all__ = [*core.__all__, *data.__all__, *curves.__all__, *vae.__all__, *compare.__all__]
