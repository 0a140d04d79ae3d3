"""The model card: everything about a checkpoint that the chain does not hold, in canonical JSON.

The registry anchors ``card_digest(card)``, so the card cannot be swapped after registration.
That only works if one card has exactly one byte form, whatever dict order or float noise it was
built with; ``canonical_json`` defines it:

* UTF-8, ``ensure_ascii=False``, keys sorted (by code point), no whitespace between tokens;
* floats rounded to 12 significant digits (a float that prints differently on another platform
  or after a harmless re-computation still serialises the same); ``-0.0`` becomes ``0.0``;
  NaN and infinities are refused;
* only dict (string keys), list/tuple, str, int, float, bool and None are allowed, nested at
  most ``MAX_CARD_DEPTH`` deep;
* the text people read (``DISPLAYED_TEXT``: model name, intended use, limitations, dataset and
  class names) follows ``modelformat.text``: no control, bidirectional-override, zero-width or
  unassigned characters, no surrounding whitespace, NFC, no two class names alike after NFKC.

Torch-free at import time, so the registry can recompute a digest without importing torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any, Final

from modelformat.text import ambiguous_pair, text_problem
from training.errors import CardError

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.data import Dataset
    from training.evaluate import Metrics
    from training.loop import TrainOutcome

CARD_SCHEMA: Final = "medical-model-registry/model-card"
CARD_SCHEMA_VERSION: Final = 1
FLOAT_SIGNIFICANT_DIGITS: Final = 12
# A card nests ~5 deep; the bound keeps json.dumps' C recursion far from the stack's end.
MAX_CARD_DEPTH: Final = 32
_LIBRARIES: Final = ("torch", "torchvision", "numpy", "safetensors", "scikit-learn", "pillow")
# The fields whose text a clinician reads (GET /models/{digest} returns the card): path -> whether
# it holds a list of texts. A card without one of them is left to the checks that need it.
DISPLAYED_TEXT: Final = {
    "model_name": False,
    "intended_use": False,
    "limitations": True,
    "dataset.name": False,
    "architecture.class_names": True,
}
_TEXT_HINT: Final = "write what a reader sees, as plain text (modelformat.text has the rules)"
_ABSENT: Final = object()


def canonical_json(card: Mapping[str, Any]) -> bytes:
    """The one byte form of ``card`` (rules in the module docstring)."""
    if not isinstance(card, Mapping):
        raise CardError("", f"the card must be an object, got {type(card).__name__}")
    check_displayed_text(card)
    text = json.dumps(
        _canonical(card, "", 0),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate has no UTF-8 form
        raise CardError("", f"text that is not valid Unicode ({exc.reason})") from exc


def check_text(field: str, value: object) -> None:
    """Refuse ``value`` for the card ``field`` (a ``CardError``) unless people may read it as is."""
    if not isinstance(value, str) or not value:
        raise CardError(field, f"must be non-empty text, not {value!r:.80}", _TEXT_HINT)
    problem = text_problem(value)
    if problem is not None:
        raise CardError(field, problem, _TEXT_HINT)


def check_displayed_text(card: Mapping[str, Any]) -> None:
    """``check_text`` on every ``DISPLAYED_TEXT`` field the card has; class names also apart."""
    for path, is_list in DISPLAYED_TEXT.items():
        value: Any = card
        for key in path.split("."):
            value = value.get(key, _ABSENT) if isinstance(value, Mapping) else _ABSENT
        if value is _ABSENT or value is None:
            continue
        if not is_list:
            check_text(path, value)
            continue
        if not isinstance(value, list | tuple):
            raise CardError(path, f"must be a list of texts, not {value!r:.80}", _TEXT_HINT)
        for i, item in enumerate(value):
            check_text(f"{path}[{i}]", item)
        pair = ambiguous_pair(value) if path == "architecture.class_names" else None
        if pair is not None:
            i, j = pair
            raise CardError(
                f"{path}[{j}]",
                f"{value[j]!r} looks the same as class {i}, {value[i]!r} (equal after Unicode "
                "NFKC normalisation)",
                "give the classes names a reader can tell apart",
            )


def card_digest(card: Mapping[str, Any]) -> str:
    """SHA-256 hex of ``canonical_json(card)``: the value the registry anchors."""
    return hashlib.sha256(canonical_json(card)).hexdigest()


def round_float(value: float) -> float:
    """``value`` at ``FLOAT_SIGNIFICANT_DIGITS`` significant digits; idempotent."""
    rounded = float(f"{value:.{FLOAT_SIGNIFICANT_DIGITS}g}")
    return 0.0 if rounded == 0.0 else rounded  # folds -0.0 into 0.0


def _canonical(value: Any, path: str, depth: int) -> Any:
    if depth > MAX_CARD_DEPTH:
        raise CardError(path, f"nested deeper than {MAX_CARD_DEPTH} levels")
    # bool before int: bool is an int subclass, and True must stay true, not 1.
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CardError(path, f"{value} is not a finite number")
        return round_float(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CardError(path, f"key {key!r} is not a string")
            out[key] = _canonical(item, f"{path}.{key}" if path else key, depth + 1)
        return out
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_canonical(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise CardError(path, f"values of type {type(value).__name__} have no canonical JSON form")


def environment() -> dict[str, str]:
    """Python and library versions, read from package metadata (no imports)."""
    versions = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def build_card(
    *,
    model_name: str,
    dataset: Dataset,
    outcome: TrainOutcome,
    config: TrainConfig,
    metrics: Metrics,
    checkpoint_file: str,
    checkpoint_sha256: str,
    tensor_digest: str,
    parent_digest: str | None,
) -> dict[str, Any]:
    """Assemble the card. Wall-clock times are left out on purpose: the same seed on the same
    machine gives the same card, hence the same digest."""
    # Here, not at the top: training.digests needs numpy, and the registry's base install reads
    # and checks cards (registry.cards) without it.
    from training.digests import SPLIT_LAYOUT, TENSOR_LAYOUT

    spec = outcome.spec
    digests = dataset.digests()
    return {
        "schema": CARD_SCHEMA,
        "schema_version": CARD_SCHEMA_VERSION,
        "model_name": model_name,
        "architecture": {
            "name": spec.architecture,
            "version": spec.architecture_version,
            "in_channels": spec.in_channels,
            "input_size": spec.input_size,
            "num_classes": spec.num_classes,
            "class_names": list(spec.class_names),
            "normalization": {"mean": list(spec.mean), "std": list(spec.std)},
            "input": "uint8 pixels, NCHW; network input is (pixel / 255 - mean) / std",
        },
        "checkpoint": {
            "format": "safetensors",
            "file_name": checkpoint_file,
            "sha256": checkpoint_sha256,
            "canonical_tensor_digest": tensor_digest,
            "canonical_tensor_digest_layout": TENSOR_LAYOUT,
        },
        "parent_digest": parent_digest,
        "dataset": {
            "name": dataset.name,
            "format": dataset.format,
            "is_stand_in": dataset.is_stand_in,
            "validation_split": dataset.val_origin,
            "digest_layout": SPLIT_LAYOUT,
            "splits": {
                split: {"size": len(dataset.split(split)), "sha256": digests[split]}
                for split in ("train", "val", "test")
            },
        },
        "evaluation": {
            "split": "test",
            "test_set_sha256": digests["test"],
            "accuracy_bps": metrics.accuracy_bps,
            "metrics": metrics.to_dict(),
            "model_selection": {
                "criterion": "best validation accuracy, ties broken by lower validation loss",
                "best_epoch": outcome.best_epoch,
                "val_accuracy": outcome.best_val_accuracy,
            },
        },
        "training": {
            "config": config.to_dict(),
            "seed": config.seed,
            "device": outcome.device,
            "precision": outcome.precision,
            "optimizer": "AdamW, one-cycle learning-rate schedule, cross-entropy loss",
            "history": [
                {
                    "epoch": e.epoch,
                    "train_loss": e.train_loss,
                    "train_accuracy": e.train_accuracy,
                    "val_accuracy": e.val_accuracy,
                    "val_loss": e.val_loss,
                }
                for e in outcome.history
            ],
        },
        "environment": environment(),
        "intended_use": intended_use(dataset),
        "limitations": limitations(dataset, metrics),
    }


def intended_use(dataset: Dataset) -> str:
    if dataset.is_stand_in:
        return (
            "Demonstration only: exercises the registry's train, register, verify and gated "
            "inference flow end to end without downloading data. It recognises upsampled "
            "handwritten digits and must never be used on patient images."
        )
    classes = ", ".join(dataset.class_names)
    return (
        f"Research use: classifies {dataset.input_size}x{dataset.input_size} images from "
        f"{dataset.name!r} into {dataset.num_classes} classes ({classes}). Not a medical device; "
        "any clinical use needs local validation on the deploying site's own data and "
        "oversight by a clinician, with the model as decision support only."
    )


def limitations(dataset: Dataset, metrics: Metrics) -> list[str]:
    items: list[str] = []
    if dataset.is_stand_in:
        items.append(
            "Trained and tested on scikit-learn's 8x8 handwritten digits upsampled to 28x28: "
            "this is NOT medical data, and the reported accuracy says nothing about any "
            "clinical task."
        )
    items += [
        f"Small network (LeNet-5) on {dataset.input_size}x{dataset.input_size} inputs: fine "
        "detail visible at full resolution is lost.",
        f"Accuracy was measured once on a single held-out test split of {metrics.n} images drawn "
        "from the same source as the training data; there is no external validation, and "
        "performance on other scanners, sites or populations is unknown.",
        "Probabilities are not calibrated; do not read a softmax score as a clinical risk.",
        "Subgroup performance (age, sex, ethnicity, device) was not assessed: the data carry no "
        "such attributes.",
    ]
    weakest = min(
        (c for c in metrics.per_class if c.recall is not None),
        key=lambda c: c.recall if c.recall is not None else 1.0,
        default=None,
    )
    if weakest is not None and weakest.recall is not None and weakest.recall < metrics.accuracy:
        items.append(
            f"Recall is lowest for class {weakest.name!r} ({weakest.recall:.1%} of "
            f"{weakest.support} test images) against {metrics.accuracy:.1%} overall; check the "
            "per-class figures before relying on the overall accuracy."
        )
    items.extend(metrics.notes)
    return items
