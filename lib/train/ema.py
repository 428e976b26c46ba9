"""The exponential moving average of a model's weights that sampling and evaluation use (lib.train keeps it).

Its update can be weighted by a device tensor (the loop's "this update was applied" flag), so skipping it for a
non-finite step needs no host read.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Exponential moving average of a model's parameters; buffers (BatchNorm statistics) are copied."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup = decay, warmup
        self._params = list(self.model.parameters())
        self._buffers = list(self.model.buffers())

    def decay_at(self, n_updates):
        """The decay for update number `n_updates` (0-based, an int or a device tensor); ramps up when warmup is on."""
        if not self.warmup:
            return self.decay
        if torch.is_tensor(n_updates):
            ramp = (1 + n_updates.float()) / (10 + n_updates.float())
            return ramp.clamp(max=self.decay)
        return min(self.decay, (1 + n_updates) / (10 + n_updates))

    @torch.no_grad()
    def update(self, model: nn.Module, n_updates, applied: torch.Tensor | None = None) -> None:
        """ema += (1 - decay) (model - ema), times `applied` (a 0-dim bool tensor: 0 leaves the EMA exactly as it
        was, without a host read); the model's buffers are copied (a skipped step has already restored them)."""
        weight = 1.0 - self.decay_at(n_updates)
        if applied is not None:
            weight = applied.to(torch.float32) * weight
        params = [p.detach() for p in model.parameters()]
        if torch.is_tensor(weight):  # a device weight: foreach lerp would read it on the host
            step = torch._foreach_sub(params, self._params)
            torch._foreach_mul_(step, weight)
            torch._foreach_add_(self._params, step)
        else:
            torch._foreach_lerp_(self._params, params, weight)
        if self._buffers:
            torch._foreach_copy_(self._buffers, list(model.buffers()))
