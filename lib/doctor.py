"""`python -m lib.doctor`: check a new machine in minutes before the first real run (lib.bench.doctor has the
checks): the device and what `amp="auto"` picks, then per family a few fast-path training steps, a checkpoint, a
resume, sampling, an evaluation chunk and a batch through the FID Inception network, as a table."""

from __future__ import annotations

import sys

from .bench.doctor import main

if __name__ == "__main__":
    sys.exit(main())
