"""Benchmark: ``registry evaluate`` against the trainer's own evaluation, same model, same data,
same run.

Generated data in MNIST's own layout (IDX files: 60 000 train and 10 000 test images of 28x28,
10 classes, unless told otherwise; no download) is trained on for one epoch by ``registry
train``, and the checkpoint is registered with its card on a local anvil node. Then, interleaved
``--rounds`` times:

(a) the trainer's own evaluation: ``training.evaluate.evaluate_model`` of the loaded network on
    the test split already in memory, in the trainer's evaluation batches: the floor, pure
    inference and metrics;
(b) ``registry evaluate FILE --data DIR``, the whole command in this process: format check,
    hashing, loading the data with the trainer's loader (train split included: the loaders
    check whole datasets), the test split's digest, the chain read, rebuilding the network, the
    same evaluation, the verdict.

Reported: test images per second of each (median over the rounds), the ratio (b)/(a) (goal
>= 0.8x), and where (b)'s extra time goes, phase by phase.

    .venv/bin/python scripts/bench_evaluate.py [--rounds 5] [--train-images 60000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from registry.chain.connection import connect, make_web3
from registry.chain.deploy import deploy_and_grant_self
from registry.chain.keys import account_from_hex
from registry.cli import EXIT_OK, main
from registry.cli.evaluate import load_test_data
from registry.config import get_settings
from registry.core.digest import digest_bytes
from registry.devnet import DEV_PRIVATE_KEYS, AnvilNode
from training.checkpoint import load_checkpoint_bytes
from training.config import TrainConfig
from training.data import write_idx
from training.evaluate import evaluate_model

CLASSES = 10
TEST_IMAGES = 10_000


def band_images(n: int, seed: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Stand-ins for MNIST digits: class c brightens rows 2c+2 .. 2c+5 over noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n).astype(np.uint8)
    images = rng.integers(0, 160, size=(n, 28, 28), dtype=np.uint8)
    for c in range(CLASSES):
        images[labels == c, 2 * c + 2 : 2 * c + 6, 4:24] += 30
    return images, labels


def write_mnist_layout(folder: Path, train_images: int) -> None:
    folder.mkdir(parents=True)
    for prefix, n, seed in (("train", train_images, 0), ("t10k", TEST_IMAGES, 1)):
        images, labels = band_images(n, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)


def quiet_main(argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` with its stdout kept, and its stderr (progress) silenced."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    if code != EXIT_OK:
        raise SystemExit(f"registry {' '.join(argv)} exited {code}: {err.getvalue()}")
    return code, out.getvalue()


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main_bench(rounds: int, train_images: int) -> int:
    with (
        tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp,
        AnvilNode(Path(tmp) / "chain") as node,
    ):
        root = Path(tmp)
        data = root / "mnist-like"
        write_mnist_layout(data, train_images)
        os.environ["REGISTRY_DATA_DIR"] = str(root / "registry")
        os.environ["REGISTRY_PRIVATE_KEY"] = DEV_PRIVATE_KEYS[0]
        account = account_from_hex(DEV_PRIVATE_KEYS[0], "anvil dev key 0")
        client, _ = deploy_and_grant_self(make_web3(node.url, 10), account, endpoint=node.url)
        chain = ["--rpc-url", node.url, "--contract", client.address]
        out = root / "model"
        print(f"training 1 epoch on {train_images} generated images ...", file=sys.stderr)
        train = ["--json", "train", "--data", str(data), "--out", str(out), "--epochs", "1"]
        _, trained = quiet_main([*train, "--max-shift", "0", "--device", "cpu", "--quiet"])
        claim = json.loads(trained)
        checkpoint = out / "model.safetensors"
        quiet_main([*chain, "register", str(checkpoint), "--card", str(out / "model_card.json")])
        command = [*chain, "--json", "evaluate", str(checkpoint), "--data", str(data)]

        settings = get_settings(rpc_url=node.url, contract_address=client.address)
        blob = checkpoint.read_bytes()
        network, spec = load_checkpoint_bytes(blob)
        dataset = load_test_data(data, "auto", TrainConfig().seed)
        batch = TrainConfig().eval_batch_size

        def trainer() -> None:
            evaluate_model(network, dataset.test, spec, batch)

        def command_run() -> None:
            _, text = quiet_main(command)
            if json.loads(text)["outcome"] != "reproduced":
                raise SystemExit(f"registry evaluate did not reproduce the claim: {text}")

        phases: dict[str, Callable[[], object]] = {
            "load data (trainer's loader)": lambda: load_test_data(
                data, "auto", TrainConfig().seed
            ),
            "test split digest": lambda: dataset.test.digest(),
            "checkpoint hash": lambda: digest_bytes(blob),
            "chain read (connect + record)": lambda: connect(settings).get(digest_bytes(blob)),
            "rebuild network": lambda: load_checkpoint_bytes(blob),
            "evaluation": trainer,
        }
        trainer()
        command_run()  # warm: first-call costs (imports, oneDNN kernel choice) out of the rounds
        samples: dict[str, list[float]] = {"trainer": [], "command": []}
        phase_samples: dict[str, list[float]] = {name: [] for name in phases}
        for _ in range(rounds):
            samples["trainer"].append(timed(trainer))
            samples["command"].append(timed(command_run))
            for name, fn in phases.items():
                phase_samples[name].append(timed(fn))

    trainer_s = statistics.median(samples["trainer"])
    command_s = statistics.median(samples["command"])
    ratio = trainer_s / command_s
    print(
        f"\n{TEST_IMAGES} test images ({train_images} train images on disk), claim "
        f"{claim['accuracy_bps']} bps, {torch.get_num_threads()} torch threads, "
        f"median of {rounds} rounds, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'':44} {'seconds':>8} {'images/s':>10}")
    print(f"{'(a) trainer: evaluate_model':44} {trainer_s:8.3f} {TEST_IMAGES / trainer_s:10,.0f}")
    print(
        f"{'(b) registry evaluate (whole command)':44} {command_s:8.3f} {TEST_IMAGES / command_s:10,.0f}"
    )
    print(f"ratio (b)/(a): {ratio:.2f}x  (goal >= 0.8x: {'met' if ratio >= 0.8 else 'NOT met'})")
    print("\nphases of (b), each timed alone (median):")
    for name, values in phase_samples.items():
        print(f"  {name:42} {statistics.median(values):8.3f}")
    return 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument(
        "--train-images",
        type=int,
        default=60_000,
        help="train split size on disk, which the loader reads too (default 60000, MNIST's)",
    )
    args = parser.parse_args(argv)
    return main_bench(args.rounds, args.train_images)


if __name__ == "__main__":
    raise SystemExit(cli())
