"""The in-memory form every loader returns: ``Dataset`` of three ``Split``s.

Holding whole splits as tensors lets the training loop batch by indexing (no per-sample
Python), and lets each split be hashed in a format-independent layout (``training.digests``) so
the registry can anchor *what* an accuracy was measured on. Normalisation statistics come from
here too, because they are a property of the training split, whatever file it was read from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import torch

from modelformat.spec import MIN_STD
from training.digests import split_digest
from training.errors import DataError

SPLITS: Final = ("train", "val", "test")
# Folder images and the built-in set are brought to the LeNet-5 input size MNIST made standard.
IMAGE_SIZE: Final = 28

# One split as numpy arrays, before it is checked and turned into a ``Split``.
SplitArrays = tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]


@dataclass(frozen=True)
class Split:
    """One split: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,), both on CPU."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_arrays(cls, images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64]) -> Split:
        # np.require copies only when needed: IDX arrays are read-only views of the file's bytes.
        return cls(
            torch.from_numpy(np.require(images, np.uint8, ["C", "W"])),
            torch.from_numpy(np.require(labels, np.int64, ["C", "W"])),
        )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def digest(self) -> str:
        """SHA-256 hex in the ``dataset-split/v1`` layout: the same pixels give the same value
        whatever file format they were read from."""
        return split_digest(self.images.numpy(), self.labels.numpy())


@dataclass(frozen=True)
class Dataset:
    """A checked dataset, ready for training. ``val_origin`` says where validation came from."""

    name: str
    format: str
    class_names: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    is_stand_in: bool
    val_origin: str

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def input_size(self) -> int:
        return int(self.train.images.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the *training* pixels, scaled to [0, 1].

        Integer sums make the result independent of summation order (so of the machine), and
        rounding to 6 decimals keeps the checkpoint header short and stable.
        """
        images = self.train.images.numpy()
        count = images.shape[0] * images.shape[2] * images.shape[3]
        means: list[float] = []
        stds: list[float] = []
        for c in range(images.shape[1]):
            channel = images[:, c].astype(np.int64)
            total = int(channel.sum())
            squares = int((channel * channel).sum())
            mean = total / count / 255.0
            var = max(squares / count / 65025.0 - mean * mean, 0.0)
            std = round(math.sqrt(var), 6)
            if std < MIN_STD:  # the checkpoint format refuses it (modelformat.spec says why)
                raise DataError(
                    f"{self.name} train split",
                    f"channel {c} has (nearly) the same value in every pixel (std {std:g} of "
                    f"pixels scaled to [0, 1], below {MIN_STD:g})",
                    "the images carry no information; check that the right files were given",
                )
            means.append(round(mean, 6))
            stds.append(std)
        return tuple(means), tuple(stds)

    def digests(self) -> dict[str, str]:
        return {name: self.split(name).digest() for name in SPLITS}
