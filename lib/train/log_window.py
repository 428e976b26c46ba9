"""The training loop's log window: sums of the loss terms over the steps between two metrics records.

Everything is summed on the device, masked by each step's `finite` verdict (a 0-dim bool tensor), so a normal step
never reads a tensor on the host; `summary()` does the one read when a record is written. The window is part of
the checkpoint (`state()` / `from_state()`), so after a resume the first record covers the same steps as in an
uninterrupted run.
"""

from __future__ import annotations

import math
import time

import torch


class Window:
    """Sums of loss terms; averages count only applied (finite) updates, so one bad step does not hide the rest."""

    def __init__(self, seconds_before: float = 0.0):
        self.groups: dict[tuple[str, ...], list[torch.Tensor]] = {}  # stat names -> [sums (K,), n finite ()]
        self.n_steps, self.seconds_before, self.start = 0, seconds_before, time.perf_counter()

    def add(self, loss: torch.Tensor, stats: dict, grad_norm: torch.Tensor, finite: torch.Tensor) -> None:
        """Count the step and add its terms where `finite` (torch.where: a NaN term adds 0, not NaN)."""
        self.n_steps += 1
        terms = {"loss": loss.detach(), "grad_norm": grad_norm, **stats}
        device = finite.device
        values = torch.stack([_on(value, device) for value in terms.values()])  # (K,)
        values = torch.where(finite, values, torch.zeros((), device=device))
        keys = tuple(terms)
        if keys in self.groups:
            sums, n = self.groups[keys]
            self.groups[keys] = [sums + values, n + finite.to(torch.float32)]
        else:
            self.groups[keys] = [values, finite.to(torch.float32)]

    def summary(self, images_per_step: int) -> dict:
        """Means over the window's finite steps (NaN loss when there were none) and img/s; one host read."""
        record = {}
        if self.groups:
            flat = torch.cat([torch.cat([sums, n.view(1)]) for sums, n in self.groups.values()]).tolist()
            for keys in self.groups:
                values, n = flat[: len(keys)], flat[len(keys)]
                flat = flat[len(keys) + 1 :]
                record.update({k: v / n for k, v in zip(keys, values)} if n else {})
        record.setdefault("loss", math.nan)
        record["img_per_s"] = images_per_step * self.n_steps / max(self.seconds(), 1e-9)
        return record

    def seconds(self) -> float:
        """Wall time the window has been open, over every session it spans."""
        return self.seconds_before + time.perf_counter() - self.start

    def state(self) -> dict:
        """Plain tensors, strings and numbers for a checkpoint."""
        return {
            "n_steps": self.n_steps,
            "seconds": self.seconds(),
            "groups": [{"keys": list(keys), "sums": sums, "n": n} for keys, (sums, n) in self.groups.items()],
        }

    @classmethod
    def from_state(cls, state: dict | None, device: torch.device) -> Window:
        """The window a checkpoint saved (an empty one for older checkpoints without it)."""
        if not state:
            return cls()
        window = cls(seconds_before=float(state["seconds"]))
        window.n_steps = int(state["n_steps"])
        for group in state["groups"]:
            window.groups[tuple(group["keys"])] = [group["sums"].to(device), group["n"].to(device)]
        return window


def _on(value, device: torch.device) -> torch.Tensor:
    """A stat as a float32 0-dim tensor on `device` (a host scalar is copied without waiting for the device)."""
    value = torch.as_tensor(value).detach()
    return value.to(device, torch.float32, non_blocking=True).reshape(())
