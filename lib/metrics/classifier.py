"""The classifier behind `fd_c10`: its config, its small supervised loop, and storing and loading it.

This is the only place in the workbook where labels are used for learning; no generative model sees them.
The classifier (`lib.nets.classifier.ResNetC10`) is trained on the training split with labels, evaluated on
the test split, and stored as `classifier.pt` (a plain state_dict) beside `classifier.json` (config, test
accuracy, data description, weights hash) under `outputs/classifier/` (`outputs/smoke/classifier/` in smoke
mode). It needs its own loop (labels, cross-entropy, accuracy), kept small and apart from the shared one.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..common import accelerator, devices, files, paths
from ..common.progress import Progress
from ..data import load_cifar10, to_float
from ..nets.classifier import ResNetC10


@dataclass(frozen=True)
class ClassifierConfig:
    width: int = 32  # channels of the first stage; features have 4 * width dims
    n_blocks: int = 2  # residual blocks per stage
    epochs: int = 30  # passes over the training images
    batch_size: int = 256  # images per step
    lr: float = 0.1  # peak SGD learning rate (one-cycle cosine schedule)
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 penalty
    n_train: int | None = None  # train on the first n_train training images; None: all
    n_test: int | None = None  # evaluate on the first n_test test images; None: all
    seed: int = 0  # seeds init, shuffles and augmentation
    amp: str = "auto"  # training precision: auto = bf16 where the device computes it natively, else fp32

    def __post_init__(self):
        for name in ("width", "n_blocks", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ClassifierConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"ClassifierConfig.lr must be > 0, got {self.lr}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"ClassifierConfig.amp must be auto, bf16 or off, got {self.amp!r}")


CLASSIFIER_FULL = ClassifierConfig()
CLASSIFIER_TINY = ClassifierConfig(
    width=8, n_blocks=1, epochs=3, batch_size=64, lr=0.05, n_train=8000, n_test=2000
)


@dataclass
class TrainedClassifier:
    """A classifier with what `fd_c10` must report beside every distance."""

    net: ResNetC10
    config: dict
    test_accuracy: float  # fraction of test images classified correctly
    weights_sha256: str  # hash of the stored state_dict bytes: keys the reference-statistics cache
    data: str  # the data copy it was trained on (CIFAR10.describe())
    lossy: bool  # trained on a lossy (JPEG) copy

    @torch.no_grad()
    def features(self, x, batch_size: int = 500, device=None) -> np.ndarray:
        """Penultimate features float64 (N, F) of uint8 images (N, 3, 32, 32) or floats in [0, 1]."""
        device = torch.device(device) if device else next(self.net.parameters()).device
        self.net.to(device).eval()
        out = []
        with Progress(len(x), "classifier features", "img", final_line=len(x) >= 10_000) as bar:
            for start in range(0, len(x), batch_size):
                out.append(self.net.features(to_float(x[start : start + batch_size], device)).double().cpu())
                bar.update(len(out[-1]))
        return torch.cat(out).numpy() if out else np.zeros((0, self.net.n_features))


def classifier_dir(smoke: bool | None = None) -> Path:
    """`outputs/classifier/`, or `outputs/smoke/classifier/` in smoke mode."""
    smoke = paths.is_smoke() if smoke is None else smoke
    return paths.output_dir("classifier", smoke)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and 4-pixel translations (reflect padding) of x (B, 3, 32, 32)."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)
    dx, dy = (int(v) for v in torch.randint(-4, 5, (2,), generator=generator))  # one shift per batch: cheap
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    return padded[:, :, 4 + dy : 36 + dy, 4 + dx : 36 + dx]


def classifier_precision(amp: str, device) -> accelerator.Precision:
    """The classifier's training precision: bf16 autocast where `device` computes bf16 natively (3x on an AMX
    CPU: 590 against 190 images/s measured), else fp32; `auto` never picks fp16 (its loss scaling is not here)."""
    if amp == "auto" and not accelerator.native_bf16(device):
        return accelerator.Precision("off", "auto: no native bf16 on this device")
    return accelerator.resolve_amp(amp, device)


def classifier_step(net, optimizer, x: torch.Tensor, y: torch.Tensor, precision="off") -> float:
    """One SGD step of cross-entropy on (x in [0, 1], labels y) under `precision` (a Precision or amp string);
    returns the loss before the step."""
    net.train()
    with accelerator.autocast(precision, x.device):
        loss = F.cross_entropy(net(x).float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def accuracy(net, x, y, batch_size: int = 500, device="cpu") -> float:
    """Fraction of uint8 images x (N, 3, 32, 32) whose argmax logit equals label y."""
    net.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        xb = to_float(x[start : start + batch_size], device)
        correct += (net(xb).argmax(1).cpu() == torch.as_tensor(y[start : start + batch_size])).sum().item()
    return correct / max(len(x), 1)


def train_classifier(cifar, cfg: ClassifierConfig = CLASSIFIER_FULL, device=None, log=print) -> tuple:
    """Train ResNetC10 on the train split with labels; returns (net, test accuracy, history of epoch losses).
    Training runs under `cfg.amp` (the log's first line names it); the test accuracy is measured in fp32."""
    device = devices.pick_device(device)
    precision = classifier_precision(cfg.amp, device)
    if log:
        log(f"classifier: {cfg.epochs} epochs on {device.type}, {precision.describe()}")
    torch.manual_seed(cfg.seed)
    x, y = cifar.split("train", limit=cfg.n_train)
    x_test, y_test = cifar.split("test", limit=cfg.n_test)
    net = ResNetC10(cfg.width, cfg.n_blocks).to(device)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
    )
    steps_per_epoch = max(len(x) // cfg.batch_size, 1)
    total = cfg.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=total, pct_start=0.15
    )
    x_dev, y_dev = torch.as_tensor(x).to(device), torch.as_tensor(y).to(device)  # kept on the device once
    generator, history = torch.Generator().manual_seed(cfg.seed), []
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(x), generator=generator).to(device)
        losses = []
        for k in range(steps_per_epoch):
            index = order[k * cfg.batch_size : (k + 1) * cfg.batch_size]
            xb = augment(to_float(x_dev[index]), generator)
            losses.append(classifier_step(net, optimizer, xb, y_dev[index], precision))
            schedule.step()
        history.append(float(np.mean(losses)))
        if log:
            log(f"epoch {epoch + 1}/{cfg.epochs}: train cross-entropy {history[-1]:.3f}")
    return net, accuracy(net, x_test, y_test, device=device), history


def save_classifier(
    net,
    cfg: ClassifierConfig,
    test_accuracy: float,
    cifar,
    extra: dict | None = None,
    smoke: bool | None = None,
) -> Path:
    """Write classifier.pt (state_dict) and classifier.json; returns the folder."""
    folder = classifier_dir(smoke)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buffer)
    files.atomic_write_bytes(folder / "classifier.pt", buffer.getvalue())
    record = dict(
        config=asdict(cfg),
        test_accuracy=test_accuracy,
        data=cifar.describe(),
        lossy=cifar.lossy,
        n_features=net.n_features,
        weights_sha256=hashlib.sha256(buffer.getvalue()).hexdigest(),
        n_params=sum(p.numel() for p in net.parameters()),
        **(extra or {}),
    )
    files.atomic_write_json(folder / "classifier.json", record)
    return folder


def load_classifier(
    smoke: bool | None = None, folder: str | Path | None = None, device="cpu"
) -> TrainedClassifier:
    """The stored classifier; a missing one is a FileNotFoundError saying how to train it."""
    folder = Path(folder) if folder else classifier_dir(smoke)
    weights, meta = folder / "classifier.pt", folder / "classifier.json"
    if not weights.is_file() or not meta.is_file():
        raise FileNotFoundError(
            f"no fd_c10 classifier in {folder}: train it with `python -m lib.metrics "
            f"train-classifier` (add --smoke for the tiny CPU one) or `lib.metrics."
            f"ensure_classifier()`"
        )
    record = json.loads(meta.read_text())
    raw = weights.read_bytes()
    cfg = record["config"]
    net = ResNetC10(cfg["width"], cfg["n_blocks"])
    net.load_state_dict(torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True))
    return TrainedClassifier(
        net.to(device).eval(),
        cfg,
        float(record["test_accuracy"]),
        hashlib.sha256(raw).hexdigest(),
        record["data"],
        bool(record["lossy"]),
    )


def ensure_classifier(
    cifar=None, cfg: ClassifierConfig | None = None, smoke: bool | None = None, device=None, log=print
) -> TrainedClassifier:
    """The stored classifier, training and storing it first when there is none (tiny config in smoke mode)."""
    smoke = paths.is_smoke() if smoke is None else smoke
    try:
        return load_classifier(smoke, device=devices.pick_device(device))
    except FileNotFoundError:
        pass
    cifar = cifar or load_cifar10()
    cfg = cfg or (CLASSIFIER_TINY if smoke else CLASSIFIER_FULL)
    start = time.monotonic()
    net, acc, history = train_classifier(cifar, cfg, device=device, log=log)
    wall = time.monotonic() - start
    save_classifier(
        net,
        cfg,
        acc,
        cifar,
        smoke=smoke,
        extra=dict(
            wall_seconds=round(wall, 1),
            device=devices.describe_device(devices.pick_device(device)),
            precision=classifier_precision(cfg.amp, devices.pick_device(device)).describe(),
            final_train_loss=history[-1] if history else math.nan,
        ),
    )
    if log:
        log(
            f"classifier: test accuracy {acc:.1%} after {cfg.epochs} epochs ({wall:.0f} s); "
            f"stored in {classifier_dir(smoke)}"
        )
    return load_classifier(smoke, device=devices.pick_device(device))
