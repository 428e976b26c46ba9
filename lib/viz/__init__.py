"""Figures, returned and never shown (a notebook displays them), stamped with a banner in smoke mode.

    core     the smoke stamp, PNG display, image grids, labelled grids, log axes, saving
    data     the data itself: per-class grids, class counts, channel histograms, mean images
    curves   training curves from metrics.jsonl (units, smoothing); several runs on shared axes
    ncsn     NCSN's noise ladder, Langevin strip, nearest training neighbours
    vae      metrics against a setting in panels with baselines, prior samples of several models as one
             labelled grid (rows = model)
    compare  the model comparison: fd_c10 calibration, sample panels, per-model views, the FID floor

Every public figure function of the three is importable from `lib.viz` itself (`viz.labelled_grid`,
`viz.metric_panels`, `viz.model_comparison`).
"""

from __future__ import annotations

from . import compare, core, curves, data, ncsn, vae
from .compare import *  # noqa: F403
from .core import *  # noqa: F403
from .curves import *  # noqa: F403
from .data import *  # noqa: F403
from .ncsn import *  # noqa: F403
from .vae import *  # noqa: F403

__all__ = [*core.__all__, *data.__all__, *curves.__all__, *ncsn.__all__, *vae.__all__, *compare.__all__]
