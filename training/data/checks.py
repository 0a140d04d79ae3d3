"""The checks every file format shares, and the one place a ``Dataset`` is assembled.

Each reader only knows its own layout; what makes data fit to train a LeNet on (square images
of a supported size, labels numbering 2..N classes from 0, three non-empty splits, every class
in train) is decided here, once, so the formats cannot drift apart. Validation carved from
train uses the same seeded permutation whatever the format.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from modelformat.spec import MAX_CLASSES, MAX_INPUT_SIZE, MIN_CLASSES, MIN_INPUT_SIZE
from training.data.types import SPLITS, Dataset, Split, SplitArrays
from training.errors import DataError


def check_image_shape(source: str, key: str, shape: tuple[int, ...]) -> None:
    """Refuse (N, C, H, W) shapes the LeNet spec cannot take: not square, or out of range."""
    _, _, height, width = shape
    if height != width or not MIN_INPUT_SIZE <= height <= MAX_INPUT_SIZE:
        raise DataError(
            source,
            f"{key} are {height}x{width}",
            f"images must be square, {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE} pixels a side",
        )


def infer_class_names(
    source: str,
    label_arrays: Sequence[npt.NDArray[np.int64]],
    known: tuple[str, ...] | None,
    generic: str = "class_",
) -> tuple[str, ...]:
    """``known`` names if given (checked against the labels), else ``<generic><n>`` per label."""
    present = [a for a in label_arrays if a.size]
    if not present:
        raise DataError(source, "holds no labels", "every split needs images")
    low = min(int(a.min()) for a in present)
    high = max(int(a.max()) for a in present)
    if low < 0:
        raise DataError(source, f"has negative label {low}", "labels must be 0 .. classes-1")
    if known is not None:
        if high >= len(known):
            raise DataError(
                source,
                f"has label {high}, but this dataset has {len(known)} classes (0..{len(known) - 1})",
                "check that the file matches its name",
            )
        return known
    count = high + 1
    if not MIN_CLASSES <= count <= MAX_CLASSES:
        raise DataError(
            source,
            f"labels span {count} class(es)",
            f"need {MIN_CLASSES} to {MAX_CLASSES} classes numbered from 0",
        )
    return tuple(f"{generic}{c}" for c in range(count))


def carve(
    images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64], fraction: float, seed: int
) -> tuple[SplitArrays, SplitArrays]:
    """Split ``fraction`` of train off as validation, by a permutation seeded with ``seed``."""
    n = labels.shape[0]
    n_val = max(1, round(n * fraction))
    if n - n_val < 1:
        raise DataError("train split", f"{n} image(s) are too few to carve a validation split")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])


def make_dataset(
    *,
    name: str,
    fmt: str,
    class_names: tuple[str, ...],
    splits: dict[str, SplitArrays],
    val_origin: str,
) -> Dataset:
    """Check the three splits against the class list and assemble the ``Dataset``."""
    if not MIN_CLASSES <= len(class_names) <= MAX_CLASSES:
        raise DataError(
            name,
            f"has {len(class_names)} class(es)",
            f"a classifier needs {MIN_CLASSES} to {MAX_CLASSES} classes",
        )
    for split in SPLITS:
        _, labels = splits[split]
        if labels.shape[0] == 0:
            raise DataError(
                f"{name} {split} split", "is empty", "every split needs at least one image"
            )
        bad = (labels < 0) | (labels >= len(class_names))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{name} {split} split",
                f"label {int(labels[i])} at index {i} is outside 0..{len(class_names) - 1}",
                "labels must number the classes from 0",
            )
    missing = sorted(set(range(len(class_names))) - set(splits["train"][1].tolist()))
    if missing:
        raise DataError(
            f"{name} train split",
            f"has no image of class(es) {', '.join(class_names[c] for c in missing)}",
            "every class needs training images",
        )
    return Dataset(
        name=name,
        format=fmt,
        class_names=class_names,
        is_stand_in=False,
        val_origin=val_origin,
        **{split: Split.from_arrays(*splits[split]) for split in SPLITS},
    )
