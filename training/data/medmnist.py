"""MedMNIST ``.npz`` files: the medical datasets this project is built to train on.

A ``.npz`` is a zip of ``.npy`` arrays, and ``.npy`` can hold pickled objects; loading with
``allow_pickle=False`` means a hostile file is refused, never executed. Shapes, dtypes and label
ranges are checked here, with the key at fault named in the error.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from training.data.checks import carve, check_image_shape, infer_class_names, make_dataset
from training.data.types import Dataset, SplitArrays
from training.errors import DataError

# Class names of the MedMNIST files we know, keyed by file stem (``pathmnist_64`` -> pathmnist),
# copied from MedMNIST's INFO table; other files get "class_0", "class_1", ...
MEDMNIST_CLASS_NAMES: Final[dict[str, tuple[str, ...]]] = {
    "pneumoniamnist": ("normal", "pneumonia"),
    "breastmnist": ("malignant", "normal, benign"),
    "pathmnist": (
        "adipose",
        "background",
        "debris",
        "lymphocytes",
        "mucus",
        "smooth muscle",
        "normal colon mucosa",
        "cancer-associated stroma",
        "colorectal adenocarcinoma epithelium",
    ),
}


def load_npz(path: Path, *, seed: int = 0, val_fraction: float = 0.1) -> Dataset:
    """A MedMNIST-style ``.npz``: ``{train,val,test}_{images,labels}``; ``val_*`` optional.

    Images (N, H, W) uint8 grayscale or (N, H, W, 3) RGB, square; labels (N,) or (N, 1) integers.
    Loaded with ``allow_pickle=False``: an object array is refused, never unpickled.
    """
    source = str(path)
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            needed = {f"{s}_{k}" for s in ("train", "test") for k in ("images", "labels")}
            if not needed <= keys:
                raise DataError(
                    source,
                    f"missing key(s) {', '.join(sorted(needed - keys))} (found: "
                    f"{', '.join(sorted(keys)) or 'none'})",
                    "a MedMNIST file holds train_images, train_labels, test_images, test_labels "
                    "and optionally val_images, val_labels",
                )
            has_val = {"val_images", "val_labels"} & keys
            if has_val and has_val != {"val_images", "val_labels"}:
                raise DataError(
                    source, f"has {has_val.pop()} without its partner", "give both or neither"
                )
            for key in sorted(needed | has_val):
                arrays[key] = archive[key]
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        # ValueError covers object arrays (which would need pickle) and malformed .npy headers.
        raise DataError(
            source, f"cannot be read as a .npz archive ({exc})", "re-download or re-export the file"
        ) from exc

    stem = re.sub(r"_\d+$", "", path.stem.lower())
    known = MEDMNIST_CLASS_NAMES.get(stem)
    splits: dict[str, SplitArrays] = {}
    for split in ("train", "val", "test"):
        if f"{split}_images" not in arrays:
            continue
        images = _npz_images(source, f"{split}_images", arrays[f"{split}_images"])
        labels = _npz_labels(source, f"{split}_labels", arrays[f"{split}_labels"])
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                source,
                f"{split}_images has {images.shape[0]} images but {split}_labels has "
                f"{labels.shape[0]} labels",
                "the two arrays must have one label per image",
            )
        splits[split] = (images, labels)
    shapes = {s: a[0].shape[1:] for s, a in splits.items()}
    if len(set(shapes.values())) != 1:
        raise DataError(
            source, f"splits have different image shapes {shapes}", "use one image size"
        )
    class_names = infer_class_names(source, [lab for _, lab in splits.values()], known)
    val_origin = "file"
    if "val" not in splits:
        (train_x, train_y), (val_x, val_y) = carve(*splits["train"], val_fraction, seed)
        splits["train"], splits["val"] = (train_x, train_y), (val_x, val_y)
        val_origin = f"carved from train ({val_fraction:.0%}, seed {seed})"
    return make_dataset(
        name=path.stem, fmt="npz", class_names=class_names, splits=splits, val_origin=val_origin
    )


def _npz_images(source: str, key: str, array: np.ndarray) -> npt.NDArray[np.uint8]:
    if array.dtype != np.uint8:
        raise DataError(
            source, f"{key} has dtype {array.dtype}", "images must be uint8 pixels 0..255"
        )
    if array.ndim == 4 and array.shape[-1] in (1, 3):
        chw = np.transpose(array, (0, 3, 1, 2))
    elif array.ndim == 3:
        chw = array[:, None]
    else:
        raise DataError(
            source,
            f"{key} has shape {array.shape}",
            "images must be (N, H, W) grayscale or (N, H, W, 3) RGB",
        )
    check_image_shape(source, key, chw.shape)
    return np.ascontiguousarray(chw)


def _npz_labels(source: str, key: str, array: np.ndarray) -> npt.NDArray[np.int64]:
    if array.dtype.kind not in "iu":
        raise DataError(source, f"{key} has dtype {array.dtype}", "labels must be integers")
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    elif array.ndim != 1:
        raise DataError(
            source,
            f"{key} has shape {array.shape}",
            "labels must be (N,) or (N, 1); multi-label files (e.g. chestmnist) are not supported",
        )
    return array.astype(np.int64)
