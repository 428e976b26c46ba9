"""Figures, returned and never shown (a notebook displays them), stamped with a banner in smoke mode.

    core     the smoke stamp, PNG display, image grids, labelled grids, log axes, saving
    curves   training curves from metrics.jsonl (units, smoothing); several runs on shared axes
    vae      metrics against a setting in panels with baselines, prior samples of several models as one
             labelled grid (rows = model)

A notebook's own figures are drawn in its cells. Every public figure function is importable from `lib.viz`
itself (`viz.labelled_grid`, `viz.metric_panels`).
"""

from __future__ import annotations

from . import core, curves, vae
from .core import *  # noqa: F403
from .curves import *  # noqa: F403
from .vae import *  # noqa: F403

__all__ = [*core.__all__, *curves.__all__, *vae.__all__]
