"""Skipping non-finite updates on the device, so a normal training step never waits for the host.

VDVAE skips "poisoned" updates (a non-finite loss or gradient norm). Deciding that on the host costs one
host-device synchronisation per step, which stalls the accelerator's queue. Here a step's verdict is a 0-dim bool
tensor `finite` that stays on the device:

- fused Adam/AdamW take it as `found_inf`, the hook torch's GradScaler uses: the kernel leaves the weights, the
  moments and the step count untouched when it is set;
- any other optimizer (Adamax has no fused kernel) runs its step, then `Snapshot.keep_if` puts back the weights and
  optimizer state saved before it with `torch.where` (a handful of kernels however many tensors: one flat copy per
  dtype and device);
- BatchNorm buffers changed by a skipped forward pass are put back the same way;
- `SkipCounts` keeps the number of skips, the streak of skips in a row and the step at which a streak first reached
  max_bad_steps on the device; the loop reads them only when it writes a record or a checkpoint.
"""

from __future__ import annotations

import itertools

import torch


class NonFiniteError(RuntimeError):
    """Too many non-finite updates in a row."""


def non_finite_message(counts: dict, cfg, step: int, last_good) -> str:
    """What NonFiniteError says: the streak's steps (numbered like checkpoints), the last good checkpoint, fixes."""
    where = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written yet"
    last, n_bad = counts["bad_streak_end"], cfg.max_bad_steps
    return (
        f"{n_bad} non-finite updates in a row (steps {last - n_bad + 1} to {last}, numbered like checkpoints:"
        f" checkpoint_N holds the state after step N; checked at step {step}; {counts['n_skipped']}"
        f" skipped in all); none was applied and {where}. "
        f"Lower lr (now {cfg.lr}), set grad_clip, or check the model and data for NaN/inf."
    )


class Snapshot:
    """A saved copy of a fixed list of tensors, kept as one flat buffer per (dtype, device); the saved values start
    at zero, which is what a lazily created optimizer state (moments, step count) starts from."""

    def __init__(self, tensors):
        self.groups = []  # (live tensors, saved views, scratch views, saved flat, scratch flat)
        by_kind: dict[tuple, list[torch.Tensor]] = {}
        for t in tensors:
            by_kind.setdefault((t.dtype, t.device), []).append(t)
        for (dtype, device), live in by_kind.items():
            sizes = [t.numel() for t in live]
            saved, scratch = (torch.zeros(sum(sizes), dtype=dtype, device=device) for _ in range(2))
            starts = [0, *itertools.accumulate(sizes)][:-1]
            views = [[_view_like(flat, s, t) for s, t in zip(starts, live)] for flat in (saved, scratch)]
            self.groups.append((live, views[0], views[1], saved, scratch))

    @torch.no_grad()
    def save(self) -> None:
        """Copy the live tensors into the snapshot."""
        for live, saved_views, _, _, _ in self.groups:
            torch._foreach_copy_(saved_views, live)

    @torch.no_grad()
    def keep_if(self, keep: torch.Tensor) -> None:
        """Leave the live tensors as they are where `keep` (0-dim bool) is True, else put the snapshot back;
        NaN and inf in the live values are replaced too (torch.where, not arithmetic)."""
        for live, _, scratch_views, saved, scratch in self.groups:
            torch._foreach_copy_(scratch_views, live)
            torch.where(keep.to(saved.device), scratch, saved, out=scratch)
            torch._foreach_copy_(live, scratch_views)


def _view_like(flat: torch.Tensor, start: int, t: torch.Tensor) -> torch.Tensor:
    """t.numel() elements of `flat` from `start`, viewed with t's own strides when t is dense (channels-last weights
    and their optimizer state): torch's batched _foreach_copy_ takes its one-kernel path only when source and
    destination strides agree, and falls back to one copy per tensor otherwise (thousands per step for NVAE)."""
    if _is_dense(t):
        return flat.as_strided(t.shape, t.stride(), flat.storage_offset() + start)
    return flat.narrow(0, start, t.numel()).view(t.shape)


def _is_dense(t: torch.Tensor) -> bool:
    """Whether t's elements fill exactly t.numel() consecutive slots in some order (no gaps, no overlaps)."""
    size = 1
    for stride, length in sorted((st, n) for st, n in zip(t.stride(), t.shape) if n != 1):
        if stride != size:
            return False
        size *= length
    return True


def state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every tensor of the optimizer's per-parameter state (moments, step counts), in a fixed order."""
    return [v for p in _params(optimizer) for v in optimizer.state.get(p, {}).values() if torch.is_tensor(v)]


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


class GuardedStep:
    """optimizer.step() applied only where `finite` is True, without reading `finite` on the host."""

    def __init__(self, optimizer: torch.optim.Optimizer, fused: bool):
        self.optimizer, self.fused = optimizer, fused
        self._params = None if fused else Snapshot(_params(optimizer))
        self._state = None  # built after the first step creates the optimizer's state

    def step(self, finite: torch.Tensor) -> None:
        if self.fused:
            self._fused_step(finite)
            return
        self._params.save()
        if self._state is not None:
            self._state.save()
        self.optimizer.step()
        if (
            self._state is None
        ):  # the first step created the state; its snapshot holds the zeros it started from
            self._state = Snapshot(state_tensors(self.optimizer))
        self._params.keep_if(finite)
        self._state.keep_if(finite)

    def _fused_step(self, finite: torch.Tensor) -> None:
        """Fused kernels skip the whole update (and undo the step count) where found_inf is 1."""
        self.optimizer.found_inf = (~finite).float()
        try:
            self.optimizer.step()
        finally:
            del self.optimizer.found_inf

    def reset_state_snapshot(self) -> None:
        """Call after loading an optimizer state_dict: its tensors replace the ones the snapshot tracked."""
        self._state = Snapshot(state_tensors(self.optimizer)) if self.optimizer.state else None


class SkipCounts:
    """Device-side counters: skipped updates, the current streak of skips in a row, applied updates, and the step at
    which a streak first reached `max_bad` (0: never). `read()` is the only host read."""

    FIELDS = ("n_skipped", "bad_in_a_row", "bad_streak_end", "n_updates")

    def __init__(self, max_bad: int, device: torch.device):
        self.max_bad = max_bad
        self.values = torch.zeros(len(self.FIELDS), dtype=torch.int64, device=device)

    @torch.no_grad()
    def add(self, finite: torch.Tensor, step: int) -> None:
        """Count the step numbered `step` (1-based, like checkpoint names) with verdict `finite`."""
        good = finite.to(torch.int64)
        n_skipped, in_a_row, streak_end, n_updates = self.values.unbind()
        in_a_row = (in_a_row + 1) * (1 - good)
        reached = (streak_end == 0) & (in_a_row >= self.max_bad)
        streak_end = torch.where(reached, step, streak_end)
        self.values = torch.stack([n_skipped + 1 - good, in_a_row, streak_end, n_updates + good])

    @property
    def n_updates(self) -> torch.Tensor:
        """Applied updates so far, on the device (the EMA's warm-up reads it)."""
        return self.values[3]

    def read(self) -> dict[str, int]:
        """The counters as Python ints (one host-device sync)."""
        return dict(zip(self.FIELDS, self.values.tolist()))

    def load(self, counts: dict) -> None:
        """Restore from a checkpoint's ints (older checkpoints lack the streak: 0)."""
        values = [int(counts.get(name, 0)) for name in self.FIELDS]
        self.values = torch.tensor(values, dtype=torch.int64, device=self.values.device)


def all_finite(tensors) -> bool:
    """Whether every floating-point tensor is free of NaN and inf (one host read)."""
    floats = [t for t in tensors if t.is_floating_point()]
    return not floats or bool(torch.stack([torch.isfinite(t).all() for t in floats]).all())
