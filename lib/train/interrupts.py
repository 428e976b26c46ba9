"""Stopping cleanly on SIGTERM and Ctrl-C (SIGINT, also the notebook's interrupt button).

While `StopRequest` is active (a `with` block in the main thread) the first SIGINT or SIGTERM only records the
request: the training loop finishes its step, checkpoints it and stops (lib.train). A second signal acts at once
(KeyboardInterrupt, or exit 128 + signal number for SIGTERM) without a checkpoint. The previous handlers are put
back when the block ends; outside the main thread Python allows no handlers, so none are installed.
`stop_if_asked` and `interrupted_now` act on the loop through its public surface: `step`, `cfg`, `world`,
`is_main`, `device`, `folder`, `stop_request`, `session_step0`, `saved_step`, `counts.read()` and `checkpoint()`.
"""

from __future__ import annotations

import signal
import sys
import threading

import torch
import torch.distributed as dist

from . import checkpoints as ckpt

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C; the message says at which step and where the checkpoint is."""


class StopRequest:
    """Records the first SIGINT/SIGTERM received inside the `with` block (`signum`, None until then)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            # None: a handler not installed from Python; the default is the closest we can put back
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.requested:  # asked twice: stop now, without a checkpoint
            self._restore()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name} received: finishing this step, saving a checkpoint, then stopping "
            "(send it again to stop at once without saving)",
            file=sys.stderr,
            flush=True,
        )


def stop_if_asked(loop, final: bool = False) -> None:
    """Called after each step (and once after the loop): after SIGINT/SIGTERM, checkpoint this step and stop.
    Under DDP the ranks agree at log steps only (one collective per window), so all stop at the same step."""
    request = loop.stop_request
    requested = request is not None and request.requested
    if loop.world > 1:
        if not final and loop.step % loop.cfg.log_every:
            return
        flag = torch.tensor(int(requested), device=loop.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        requested = bool(flag.item())
    if not requested:
        return
    saved = loop.saved_step == loop.step or loop.checkpoint()  # _save writes nothing over non-finite weights
    message = stopped_message(loop, request.name or "a signal to another rank", saved=saved)
    if request.signum == signal.SIGTERM:
        raise SystemExit(128 + signal.SIGTERM)  # the message is printed; 143 tells a scheduler it was SIGTERM
    raise Interrupted(message)


def interrupted_now(loop) -> Interrupted:
    """For a KeyboardInterrupt that did not come through StopRequest (raised by code inside a step, or with no
    handler outside the main thread): checkpoint the last completed step when the state is whole (the counters
    agree with the step: no update half applied) and one process runs (peers cannot join a save). The counters
    live on the device; reading them here is the one host read this needs."""
    counts = loop.counts.read()  # one host read for both counters
    whole = counts["n_updates"] + counts["n_skipped"] == loop.step
    progressed = loop.session_step0 is not None and loop.step > loop.session_step0
    asked_twice = loop.stop_request is not None and loop.stop_request.requested  # "stop at once, no saving"
    saved = loop.world == 1 and whole and progressed and not asked_twice and loop.saved_step != loop.step
    saved = saved and loop.checkpoint()
    return Interrupted(stopped_message(loop, "KeyboardInterrupt", saved=saved))


def stopped_message(loop, why: str, saved: bool) -> str:
    """Where the run stopped and what a rerun does; printed by rank 0."""
    if saved or loop.saved_step == loop.step:
        where = f"checkpoint saved as {ckpt.checkpoint_path(loop.folder, loop.step)}"
    else:
        kept = ckpt.list_checkpoints(loop.folder)
        where = f"no checkpoint written now; the newest is {kept[-1]}" if kept else "no checkpoint exists yet"
    message = (
        f"stopped by {why} at step {loop.step}/{loop.cfg.steps}: {where}. Run the same command (or "
        "train() call) again to resume from there."
    )
    if loop.is_main:
        print(message, file=sys.stderr, flush=True)
    return message
