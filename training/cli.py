"""Command-line training: ``registry train ...`` and ``python -m training ...``.

The registry's console script adds these arguments to its own ``train`` sub-command and calls
``run_train``; ``main`` is the standalone entry point. One run: load and check the data, train,
evaluate the test split once, write ``model.safetensors`` and ``model_card.json``, and report
the three digests the registry anchors (checkpoint, card, test set) plus the accuracy in basis
points. Results go to stdout, progress and the human summary to stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelformat.errors import InvalidInput
from training.config import FORMATS, TrainConfig
from training.errors import ConfigError

if TYPE_CHECKING:
    from training.evaluate import Metrics

CHECKPOINT_FILE = "model.safetensors"
CARD_FILE = "model_card.json"
DEFAULT_OUT = "trained-model"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DEFAULTS = TrainConfig()


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced; the three digests and ``accuracy_bps`` go on chain."""

    model_name: str
    checkpoint_path: Path
    card_path: Path
    checkpoint_sha256: str  # SHA-256 hex of the checkpoint file bytes: the model's identity
    card_digest: str  # SHA-256 hex of the card's canonical JSON (= of the card file's bytes)
    test_set_digest: str  # SHA-256 hex of the test split, layout dataset-split/v1
    tensor_digest: str  # format-independent digest of the weights, layout tensor-set/v1
    accuracy_bps: int  # test accuracy in basis points, floored
    metrics: Metrics
    dataset_name: str
    is_stand_in: bool
    parent_digest: str | None
    card: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "checkpoint_path": str(self.checkpoint_path),
            "card_path": str(self.card_path),
            "checkpoint_sha256": self.checkpoint_sha256,
            "card_digest": self.card_digest,
            "test_set_digest": self.test_set_digest,
            "tensor_digest": self.tensor_digest,
            "accuracy_bps": self.accuracy_bps,
            "dataset": self.dataset_name,
            "is_stand_in": self.is_stand_in,
            "parent_digest": self.parent_digest,
            "metrics": self.metrics.to_dict(),
        }


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the training flags to ``parser`` (a sub-command parser or a top-level one)."""
    d = _DEFAULTS
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        metavar="PATH",
        default=None,
        help="a folder of MNIST-format IDX files, a MedMNIST .npz, or an image folder "
        "(<root>/<class>/*.png); default: the built-in stand-in (sklearn digits, not medical)",
    )
    data.add_argument(
        "--data-format",
        choices=FORMATS,
        default="auto",
        help="how to read --data (default: auto, from the path)",
    )
    data.add_argument(
        "--download",
        action="store_true",
        help="download MNIST into --data first (needs network; default: never download)",
    )
    opt = parser.add_argument_group("training")
    opt.add_argument(
        "--epochs", type=int, default=d.epochs, help=f"passes over train (default: {d.epochs})"
    )
    opt.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help=f"images per step (default: {d.batch_size})",
    )
    opt.add_argument(
        "--lr",
        type=float,
        default=d.lr,
        help=f"peak AdamW learning rate, one-cycle (default: {d.lr})",
    )
    opt.add_argument(
        "--max-shift",
        type=int,
        default=d.max_shift,
        help=f"random shift augmentation in pixels, 0 = off (default: {d.max_shift})",
    )
    opt.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default: {d.seed})")
    opt.add_argument(
        "--device",
        default=d.device,
        help=f"'auto' (CUDA if present, else CPU), 'cpu', 'cuda', 'cuda:1'... (default: {d.device})",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--out",
        metavar="DIR",
        default=DEFAULT_OUT,
        help=f"folder for {CHECKPOINT_FILE} and {CARD_FILE}, replaced if present "
        f"(default: ./{DEFAULT_OUT})",
    )
    out.add_argument(
        "--name", default=None, help="model name in the card (default: lenet5-<dataset name>)"
    )
    out.add_argument(
        "--parent",
        metavar="DIGEST",
        default=None,
        help="SHA-256 of the checkpoint this one supersedes, recorded in the card (default: none)",
    )
    out.add_argument("--quiet", action="store_true", help="no progress bars or summary on stderr")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        max_shift=args.max_shift,
        seed=args.seed,
        device=args.device,
    )


def run_train(args: argparse.Namespace) -> TrainResult:
    """Train, evaluate, write both files; raise an ``InvalidInput`` (``TrainingError``, ``SpecError``...) on bad input or flags."""
    # torch is imported here, not with the module: the flags above serve every `registry`
    # command's parser, and only `train` needs the deep-learning stack.
    from training.card import build_card, canonical_json, card_digest, check_text
    from training.checkpoint import atomic_write, canonical_tensor_digest, save_checkpoint
    from training.data import load_dataset
    from training.evaluate import evaluate_model
    from training.loop import resolve_device, train

    config = config_from_args(args)
    parent = parse_parent_digest(args.parent)
    resolve_device(config.device)  # fail on a bad --device before spending time on data
    dataset = load_dataset(
        args.data,
        args.data_format,
        seed=config.seed,
        val_fraction=config.val_fraction,
        download=args.download,
    )
    name = args.name or _default_name(dataset.name)
    check_text("model_name", name)  # the card would refuse it, but only after training
    quiet = bool(args.quiet)
    if not quiet:
        stand_in = " [STAND-IN: not medical data]" if dataset.is_stand_in else ""
        _say(
            f"dataset {dataset.name}{stand_in}: {len(dataset.train)} train, {len(dataset.val)} val "
            f"({dataset.val_origin}), {len(dataset.test)} test, {dataset.num_classes} classes, "
            f"{dataset.in_channels}x{dataset.input_size}x{dataset.input_size}"
        )

    outcome = train(dataset, config, quiet=quiet)
    metrics = evaluate_model(outcome.model, dataset.test, outcome.spec, config.eval_batch_size)

    out_dir = Path(args.out)
    checkpoint_path = out_dir / CHECKPOINT_FILE
    card_path = out_dir / CARD_FILE
    checkpoint_sha256 = save_checkpoint(outcome.model, outcome.spec, checkpoint_path)
    tensor_digest = canonical_tensor_digest(outcome.model.state_dict())
    card = build_card(
        model_name=name,
        dataset=dataset,
        outcome=outcome,
        config=config,
        metrics=metrics,
        checkpoint_file=CHECKPOINT_FILE,
        checkpoint_sha256=checkpoint_sha256,
        tensor_digest=tensor_digest,
        parent_digest=parent,
    )
    # The file *is* the canonical form, so sha256(file bytes) == card digest.
    atomic_write(card_path, canonical_json(card))
    result = TrainResult(
        model_name=name,
        checkpoint_path=checkpoint_path,
        card_path=card_path,
        checkpoint_sha256=checkpoint_sha256,
        card_digest=card_digest(card),
        test_set_digest=card["evaluation"]["test_set_sha256"],
        tensor_digest=tensor_digest,
        accuracy_bps=metrics.accuracy_bps,
        metrics=metrics,
        dataset_name=dataset.name,
        is_stand_in=dataset.is_stand_in,
        parent_digest=parent,
        card=card,
    )
    if not quiet:
        _say(summary(result, outcome.best_epoch, config.epochs, outcome.images_per_s))
    return result


def summary(result: TrainResult, best_epoch: int, epochs: int, images_per_s: float) -> str:
    """A few lines a person can read; the stand-in warning comes first when it applies."""
    m = result.metrics
    auc = f"{m.macro_auc_ovr:.4f}" if m.macro_auc_ovr is not None else "n/a"
    lines = []
    if result.is_stand_in:
        lines.append(f"STAND-IN DATA: {result.dataset_name}; this model is not for patient images")
    lines += [
        f"trained {result.model_name}: test accuracy {m.accuracy:.2%} ({result.accuracy_bps} bps, "
        f"floored) on {m.n} images, macro AUC {auc}, best epoch {best_epoch}/{epochs}, "
        f"{images_per_s:,.0f} images/s",
        f"  checkpoint  {result.checkpoint_path}  sha256:{result.checkpoint_sha256}",
        f"  model card  {result.card_path}  sha256:{result.card_digest}",
        f"  test set    sha256:{result.test_set_digest}",
    ]
    return "\n".join(lines)


def parse_parent_digest(value: str | None) -> str | None:
    """``<64 hex>``, ``0x<64 hex>`` or ``sha256:<64 hex>`` (any case) -> 64 lowercase hex."""
    if value is None:
        return None
    text = value.strip().lower()
    for prefix in ("sha256:", "0x"):
        text = text.removeprefix(prefix)
    if not _HEX64.fullmatch(text):
        raise ConfigError(
            "parent",
            value,
            "must be a SHA-256 digest: 64 hex characters, optionally prefixed 'sha256:' or '0x'",
        )
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training``: exit 0 on success, 1 on bad data or settings, 2 on usage errors."""
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train LeNet-5 and write a safetensors checkpoint plus its model card.",
    )
    add_train_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    args = parser.parse_args(argv)
    try:
        result = run_train(args)
    except InvalidInput as exc:  # bad data or flags, or a run that diverged (NaN weights)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(
            f"sha256:{result.checkpoint_sha256} accuracy_bps={result.accuracy_bps} "
            f"test_set=sha256:{result.test_set_digest} card=sha256:{result.card_digest}"
            + (" (stand-in data, not medical)" if result.is_stand_in else "")
        )
    return 0


def _default_name(dataset_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", dataset_name.lower().split("(")[0]).strip("-")
    return f"lenet5-{slug or 'model'}"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
