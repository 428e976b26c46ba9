"""Figures, returned and never shown (a notebook displays them), stamped with a banner in smoke mode.

    core     images, grids, curves, log axes, the smoke stamp, NCSN's ladder / strip / neighbours
    vae      reconstructions, traversals, interpolations, rate-distortion, NVAE's group KL
    compare  the model comparison: fd_c10 calibration, sample panels, per-model views, the FID floor

Every public figure function of the three is importable from `lib.viz` itself (`viz.labelled_grid`,
`viz.rate_distortion`, `viz.model_comparison`).
"""

from __future__ import annotations

from . import compare, core, vae
from .compare import *  # noqa: F403
from .core import *  # noqa: F403
from .vae import *  # noqa: F403

__all__ = [*core.__all__, *vae.__all__, *compare.__all__]
