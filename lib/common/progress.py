"""Progress bars for long non-training work (drawing sample banks, importance-weighted evaluation, classifier
features) that stay readable in a saved notebook.

tqdm's notebook widget is saved as a bar frozen at 0% (the widget state is not in the .ipynb), so these bars
are plain text on stderr (updated in place by Jupyter and terminals, at most every `mininterval` seconds, and only
once the work has taken that long, so short work saves no bar into a notebook), and on closing they print one final
line to stdout: what was done, the count and the time, e.g.
`sampling: 2,000 / 2,000 img in 41.3 s (48.4 img/s)`.
"""

from __future__ import annotations

import sys
import time

from tqdm.std import tqdm


class Progress:
    """A text progress bar over `total` units; `update(n)` advances it. Use as a context manager (or call
    `close()`): closing prints the final count-and-time line."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "it",
        mininterval: float = 5.0,
        final_line: bool = True,
        file=None,
    ):
        self.total, self.desc, self.unit, self.final_line, self.n = total, desc, unit, final_line, 0
        self.start = time.perf_counter()
        self.out = file or sys.stdout
        self.bar = tqdm(
            total=total,
            desc=desc,
            unit=unit,
            mininterval=mininterval,
            delay=mininterval,  # work done sooner shows no bar at all: no 0% bars saved into a notebook
            file=sys.stderr,
            leave=False,
            dynamic_ncols=False,
            ncols=90,
        )

    def update(self, n: int = 1) -> None:
        self.n += n
        self.bar.update(n)

    def summary(self) -> str:
        """The final line: '<desc>: n / total <unit> in s (rate)'."""
        seconds = time.perf_counter() - self.start
        rate = f" ({self.n / seconds:,.1f} {self.unit}/s)" if seconds > 0 and self.n else ""
        return f"{self.desc}: {self.n:,} / {self.total:,} {self.unit} in {seconds:.1f} s{rate}"

    def close(self) -> None:
        if self.bar is None:
            return
        self.bar.close()
        self.bar = None
        if self.final_line:
            print(self.summary(), file=self.out, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
