"""Checks shared by the frozen config dataclasses' `__post_init__`: each field holds its annotated type and every
float is finite, with errors naming the class and the field."""

from __future__ import annotations

import math
from dataclasses import fields

KINDS = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def check_field_types(cfg) -> None:
    """Raise ValueError unless each int, float, bool or str field of dataclass `cfg` holds that type (an int where
    an int is due, never a bool; any real number where a float is due) and every float is finite: a NaN or
    infinite lr would otherwise train to NaN weights and still "finish". Other annotations are not checked."""
    for f in fields(cfg):
        value, kind = (
            getattr(cfg, f.name),
            f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""),
        )
        allowed = KINDS.get(kind)
        if allowed is None:
            continue
        if not isinstance(value, allowed) or (kind != "bool" and isinstance(value, bool)):
            raise ValueError(
                f"{type(cfg).__name__}.{f.name} must be {kind}, got {type(value).__name__} {value!r}"
            )
        if kind == "float" and not math.isfinite(value):
            raise ValueError(f"{type(cfg).__name__}.{f.name} must be a finite number, got {value}")
