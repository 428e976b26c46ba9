"""`python -m lib.metrics train-classifier [--epochs N] [--smoke] [--device D] [--force]`: train and store the
fd_c10 feature classifier (the only place labels are used for learning)."""

from __future__ import annotations

import argparse
import dataclasses

from ..common import paths
from .classifier import CLASSIFIER_FULL, CLASSIFIER_TINY, classifier_dir, ensure_classifier


def main(argv: list[str] | None = None) -> int:
    """CLI: `train-classifier` trains the fd_c10 classifier on the train split and stores it under outputs/."""
    parser = argparse.ArgumentParser(prog="python -m lib.metrics")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train-classifier", help="train the fd_c10 feature classifier (labels used only here)")
    p.add_argument("--epochs", type=int, help="passes over the training images (default: the preset's)")
    p.add_argument(
        "--smoke", action="store_true", help="the tiny CPU classifier, stored under outputs/smoke/"
    )
    p.add_argument("--device", help="cuda / cpu / mps (default: the best available)")
    p.add_argument("--force", action="store_true", help="retrain even when a classifier is stored")
    args = parser.parse_args(argv)
    smoke = args.smoke or paths.is_smoke()
    cfg = CLASSIFIER_TINY if smoke else CLASSIFIER_FULL
    cfg = dataclasses.replace(cfg, epochs=args.epochs) if args.epochs else cfg
    if args.force:
        (classifier_dir(smoke) / "classifier.json").unlink(missing_ok=True)
    trained = ensure_classifier(cfg=cfg, smoke=smoke, device=args.device)
    print(
        f"fd_c10 classifier in {classifier_dir(smoke)}: test accuracy {trained.test_accuracy:.2%} "
        f"(trained on {trained.data})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
