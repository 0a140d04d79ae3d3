"""Folders of images, one sub-folder per class: how most hospital exports and hand-made sets look.

Images are decoded with Pillow and brought to 28x28 as they are read, so memory stays small
whatever the originals weigh, by ``modelformat.pixels``: the one transform the clinic service
also applies to a clinician's image, so a served model sees images the way it was trained. Where the folder has no ``train``/``test`` sub-folders, each
class is split with a seeded permutation, so every class reaches every split.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import torch

from training.data.checks import carve, make_dataset
from training.data.types import IMAGE_SIZE, SPLITS, Dataset, SplitArrays
from training.errors import DataError

# Share of each class held out for testing when an image folder has no train/test sub-folders.
FOLDER_TEST_FRACTION: Final = 0.2
IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".bmp")


def load_folder(path: Path, *, seed: int = 0, val_fraction: float = 0.1) -> Dataset:
    """``root/<class>/*.png|jpg``, or ``root/{train,val,test}/<class>/...`` when those exist.

    Images become 8-bit grayscale (or RGB if any image has colour) at 28x28 through
    ``modelformat.pixels.to_pixels``: 16-bit scaled, transparency composited onto black,
    padded to a square with black, then resized (bilinear). Without ``train``/``test`` sub-folders, each class is split
    with a seeded permutation: 20 % test, ``val_fraction`` val, the rest train.
    """
    if not path.is_dir():
        raise DataError(str(path), "is not a folder", "give an image folder, a .npz or IDX folder")
    has_splits = (path / "train").is_dir() and (path / "test").is_dir()
    files: dict[str, list[tuple[Path, str]]] = {}
    if has_splits:
        class_names = _class_dirs(path / "train")
        for split in SPLITS:
            folder = path / split
            if split == "val" and not folder.is_dir():
                continue
            unknown = sorted(set(_class_dirs(folder, allow_empty=True)) - set(class_names))
            if unknown:
                raise DataError(
                    str(folder),
                    f"has class folder(s) {', '.join(unknown)} that train/ does not have",
                    "every class needs training images",
                )
            files[split] = _image_files(folder, class_names)
    else:
        class_names = _class_dirs(path)
        everything = _image_files(path, class_names)
        generator = torch.Generator().manual_seed(seed)
        files = {"train": [], "val": [], "test": []}
        for name in class_names:
            members = [item for item in everything if item[1] == name]
            order = torch.randperm(len(members), generator=generator).tolist()
            n_test = round(len(members) * FOLDER_TEST_FRACTION)
            n_val = round(len(members) * val_fraction)
            for rank, index in enumerate(order):
                split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
                files[split].append(members[index])

    decoded = {split: [_read_image(file) for file, _ in items] for split, items in files.items()}
    # Grayscale unless some image has colour; a gray image is then replicated to 3 channels.
    rgb = any(colour for images in decoded.values() for _, colour in images)
    channels = 3 if rgb else 1
    index = {name: i for i, name in enumerate(class_names)}
    splits: dict[str, SplitArrays] = {}
    for split, items in files.items():
        arrays = [array[:channels] for array, _ in decoded[split]]
        images = (
            np.stack(arrays)
            if arrays
            else np.zeros((0, channels, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        )
        labels = np.array([index[label] for _, label in items], dtype=np.int64)
        splits[split] = (images, labels)
    val_origin = "file"
    if "val" not in splits:
        splits["train"], splits["val"] = carve(*splits["train"], val_fraction, seed)
        val_origin = f"carved from train ({val_fraction:.0%}, seed {seed})"
    elif not has_splits:
        val_origin = f"split per class from the folder ({val_fraction:.0%}, seed {seed})"
    return make_dataset(
        name=unicodedata.normalize("NFC", path.name or str(path)),
        fmt="folder",
        # macOS file systems hand back names in NFD; the checkpoint's labels are text people
        # read, which the format check takes in NFC only (modelformat.text).
        class_names=tuple(unicodedata.normalize("NFC", name) for name in class_names),
        splits=splits,
        val_origin=val_origin,
    )


def _class_dirs(folder: Path, allow_empty: bool = False) -> list[str]:
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names and not allow_empty:
        raise DataError(
            str(folder),
            "has no class sub-folders",
            "lay images out as <root>/<class name>/<image>.png (one sub-folder per class)",
        )
    return names


def _image_files(folder: Path, class_names: Sequence[str]) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for name in class_names:
        class_dir = folder / name
        if not class_dir.is_dir():
            continue
        found.extend(
            (p, name)
            for p in sorted(class_dir.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
    return found


def _read_image(path: Path) -> tuple[npt.NDArray[np.uint8], bool]:
    """Decode, bring to 28x28 right away, return (3, 28, 28) pixels and "has colour".

    Resizing per file keeps memory at 2 KiB per image however large the originals are. Gray
    images go through the transform as one channel and are replicated, which equals
    converting them to RGB first (the service does that for an RGB model).
    """
    from PIL import Image, UnidentifiedImageError

    from modelformat import pixels

    try:
        with Image.open(path) as handle:
            pixels.draft(handle, IMAGE_SIZE)  # before load(): a JPEG decodes at reduced scale
            handle.load()
            colour = pixels.is_colour(handle)
            array = pixels.to_pixels(handle, in_channels=3 if colour else 1, size=IMAGE_SIZE)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(
            str(path), f"is not a readable image ({exc})", "remove or replace it"
        ) from exc
    if colour:
        return array, True
    return np.repeat(array, 3, axis=0), False
