"""Benchmark: the textbook LeNet recipe against ``training.loop`` on the same data, in one run.

(a) The original recipe, as tutorials write it: torchvision's ``MNIST`` dataset reading IDX files,
    per-sample ``ToTensor()`` + ``Normalize((0.5,), (0.5,))`` on PIL images, ``DataLoader(
    batch_size=64, shuffle=True, num_workers=2)``, SGD (lr 0.001, momentum 0.9), final weights.
(b) Ours: whole splits as uint8 tensors, batch gathers, AdamW + one-cycle, best validation epoch.

Same network class, same training images (the built-in split is written out as IDX files in a
temporary folder so (a) reads it exactly as it would read MNIST), same test split, same number
of epochs. Throughput is training images per second of training-loop wall time (for (a) that
includes its worker start-up each epoch, which is part of the recipe). Targets: ours >= 4x the
images/s of (a), ours >= (a) in test accuracy, ours >= 97 % on the built-in set.

    .venv/bin/python scripts/bench_training.py                 # built-in set, 40 epochs
    .venv/bin/python scripts/bench_training.py --data mnist/   # + a real MNIST/MedMNIST file
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from torchvision import transforms
from torchvision.datasets import MNIST

from training.config import TrainConfig
from training.data import Dataset, load_dataset, write_idx
from training.evaluate import evaluate_model
from training.loop import train
from training.model import LeNet5


class ArrayImages(TorchDataset[tuple[torch.Tensor, int]]):
    """For RGB data, which IDX cannot hold: the same per-sample PIL pipeline as MNIST's."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: transforms.Compose):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[i].transpose(1, 2, 0))
        return self.transform(image), int(self.labels[i])


def original_datasets(
    ds: Dataset, folder: Path
) -> tuple[TorchDataset[tuple[torch.Tensor, int]], TorchDataset[tuple[torch.Tensor, int]]]:
    channels = ds.in_channels
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5,) * channels, (0.5,) * channels)]
    )
    if channels == 3:
        return (
            ArrayImages(ds.train.images.numpy(), ds.train.labels.numpy(), transform),
            ArrayImages(ds.test.images.numpy(), ds.test.labels.numpy(), transform),
        )
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, split in (("train", ds.train), ("t10k", ds.test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", split.images[:, 0].numpy())
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", split.labels.numpy().astype(np.uint8))
    return (
        MNIST(str(folder), train=True, download=False, transform=transform),
        MNIST(str(folder), train=False, download=False, transform=transform),
    )


def run_original(ds: Dataset, epochs: int, seed: int, workers: int) -> tuple[float, float, float]:
    """(images/s, test accuracy, total seconds) of the textbook recipe."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train_set, test_set = original_datasets(ds, Path(tmp))
        torch.manual_seed(seed)
        model = LeNet5(ds.in_channels, ds.num_classes, ds.input_size)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
        loader = DataLoader(train_set, batch_size=64, shuffle=True, num_workers=workers)
        seen, train_seconds = 0, 0.0
        for epoch in range(epochs):
            model.train()
            t0 = time.perf_counter()
            for images, labels in loader:
                optimizer.zero_grad()
                loss = F.cross_entropy(model(images), labels)
                loss.backward()
                optimizer.step()
                seen += labels.shape[0]
            train_seconds += time.perf_counter() - t0
            print(f"  original epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}", file=sys.stderr)
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for images, labels in DataLoader(test_set, batch_size=1000, num_workers=0):
                correct += int((model(images).argmax(1) == labels).sum())
                total += labels.shape[0]
    return seen / train_seconds, correct / total, time.perf_counter() - started


def run_ours(ds: Dataset, epochs: int, seed: int) -> tuple[float, float, float]:
    started = time.perf_counter()
    outcome = train(ds, TrainConfig(epochs=epochs, seed=seed, device="cpu"), quiet=True)
    metrics = evaluate_model(outcome.model, ds.test, outcome.spec)
    return outcome.images_per_s, metrics.accuracy, time.perf_counter() - started


def bench(ds: Dataset, epochs: int, seed: int, workers: int, require_97: bool) -> None:
    print(
        f"\n== {ds.name}: {len(ds.train)} train / {len(ds.test)} test images, "
        f"{ds.in_channels}x{ds.input_size}x{ds.input_size}, {epochs} epochs, "
        f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    orig_ips, orig_acc, orig_total = run_original(ds, epochs, seed, workers)
    ours_ips, ours_acc, ours_total = run_ours(ds, epochs, seed)
    ratio = ours_ips / orig_ips
    rows = [
        ("original (DataLoader, PIL, SGD)", orig_ips, orig_acc, orig_total),
        ("ours (tensor batches, AdamW)", ours_ips, ours_acc, ours_total),
    ]
    print(f"{'recipe':34} {'images/s':>10} {'test acc':>9} {'wall s':>7}")
    for name, ips, acc, total in rows:
        print(f"{name:34} {ips:10,.0f} {acc:9.2%} {total:7.1f}")
    print(f"load average after: {os.getloadavg()[0]:.2f} (other work on the machine skews both)")
    print(f"speed-up: {ratio:.1f}x  (target >= 4x: {'met' if ratio >= 4 else 'NOT met'})")
    print(
        f"accuracy: ours - original = {ours_acc - orig_acc:+.2%} "
        f"(target >= 0: {'met' if ours_acc >= orig_acc else 'NOT met'})"
    )
    if require_97:
        print(f"ours >= 97 %: {'met' if ours_acc >= 0.97 else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs",
        type=int,
        default=TrainConfig().epochs,
        help="epochs for both recipes (default: the training default)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for both (default: 0)")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="DataLoader workers of the original recipe (default: 2)",
    )
    parser.add_argument(
        "--data", default=None, help="also benchmark a real MNIST IDX folder or MedMNIST .npz"
    )
    parser.add_argument(
        "--data-epochs",
        type=int,
        default=2,
        help="epochs for --data, where one epoch of the original recipe can take minutes "
        "(default: 2)",
    )
    args = parser.parse_args(argv)
    bench(load_dataset(None), args.epochs, args.seed, args.workers, require_97=True)
    if args.data:
        data = load_dataset(args.data, seed=args.seed)
        bench(data, args.data_epochs, args.seed, args.workers, require_97=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
