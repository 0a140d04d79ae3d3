"""Datasets people already have, read into one in-memory form, checked before training starts.

Every loader returns a ``Dataset``: uint8 NCHW images and int64 labels per split (train, val,
test), class names, a name, and ``is_stand_in``. Holding whole splits as tensors lets the
training loop batch by indexing (no per-sample Python), and lets the test split be hashed in a
format-independent layout (``training.digests``) so the registry can anchor *what* an accuracy
was measured on.

Formats: MNIST-style IDX files (optionally ``.gz``), MedMNIST ``.npz`` files, folders of images
(one sub-folder per class), and a built-in stand-in that needs no network. Anything malformed
raises ``DataError`` naming the file, key or value and what to do; nothing is unpickled.
"""

from __future__ import annotations

import gzip
import math
import re
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import torch

from modelformat.spec import MAX_CLASSES, MAX_INPUT_SIZE, MIN_CLASSES, MIN_INPUT_SIZE
from training.config import FORMATS
from training.digests import split_digest
from training.errors import DataError

SPLITS: Final = ("train", "val", "test")

BUILTIN_NAME: Final = "sklearn-digits-28 (stand-in, not medical data)"
# Folder images and the built-in set are brought to the LeNet-5 input size MNIST made standard.
IMAGE_SIZE: Final = 28
# Share of each class held out for testing when an image folder has no train/test sub-folders.
FOLDER_TEST_FRACTION: Final = 0.2
IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".bmp")

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

_IDX_FILES: Final = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
# IDX type byte 0x08 is unsigned byte, the only element type MNIST-format files use.
_IDX_UBYTE: Final = 0x08
# A bound on decompressed IDX/.gz size: MNIST's largest file is 47 MB; this leaves 40x headroom.
_MAX_FILE_BYTES: Final = 2 << 30


@dataclass(frozen=True)
class Split:
    """One split: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,), both on CPU."""

    images: torch.Tensor
    labels: torch.Tensor

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
            if std == 0.0:
                raise DataError(
                    f"{self.name} train split",
                    f"channel {c} has the same value in every pixel",
                    "the images carry no information; check that the right files were given",
                )
            means.append(round(mean, 6))
            stds.append(std)
        return tuple(means), tuple(stds)

    def digests(self) -> dict[str, str]:
        return {name: self.split(name).digest() for name in SPLITS}


def load_dataset(
    path: str | Path | None = None,
    fmt: str = "auto",
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    download: bool = False,
) -> Dataset:
    """Load and check a dataset; ``path=None`` (or ``fmt="builtin"``) gives the built-in one.

    ``auto`` picks: a ``.npz`` file -> MedMNIST; a folder holding IDX files (directly, in
    ``raw/`` or in ``MNIST/raw/``) -> IDX; any other folder -> image folder. Where a file has no
    validation split, ``val_fraction`` of train is carved off with a permutation seeded by
    ``seed``. ``download`` fetches MNIST into ``path`` through torchvision first.
    """
    if fmt not in FORMATS:
        raise DataError(
            "--data-format", f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}"
        )
    if not 0.0 < val_fraction < 0.5:
        raise DataError("val_fraction", f"{val_fraction} is outside (0, 0.5)")
    if download and path is None:
        raise DataError("--download", "needs --data DIR to download MNIST into")
    if fmt == "builtin" or (path is None and fmt == "auto"):
        return load_builtin()
    if path is None:
        raise DataError("--data", f"format {fmt!r} needs a path", "give --data PATH")
    root = Path(path)
    if download and fmt not in ("auto", "idx"):
        raise DataError("--download", f"only MNIST (IDX) can be downloaded, not {fmt!r}")
    if download:
        _download_mnist(root)
        fmt = "idx"
    if not root.exists():
        raise DataError(str(root), "does not exist", "check the --data path")
    if fmt == "auto":
        if root.is_file():
            if root.suffix.lower() != ".npz":
                raise DataError(
                    str(root),
                    "is a file but not a .npz",
                    "give a MedMNIST .npz, a folder of IDX files, or an image folder",
                )
            fmt = "npz"
        else:
            fmt = "idx" if _find_idx_dir(root) is not None else "folder"
    if fmt == "npz":
        return load_npz(root, seed=seed, val_fraction=val_fraction)
    if fmt == "idx":
        return load_idx(root, seed=seed, val_fraction=val_fraction)
    return load_folder(root, seed=seed, val_fraction=val_fraction)


# --- built-in stand-in -----------------------------------------------------------------------


def load_builtin() -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, 10 classes), upsampled to 28x28. Not medical.

    It ships inside an installed package, so a demo trains with no network. The split is fixed
    and uses no RNG: within each class, in file order, image j goes to test if j % 10 < 2, to
    val if j % 10 == 2, else to train (about 70/10/20 %, every class in every split).
    """
    from sklearn.datasets import load_digits  # deferred: only this loader needs scikit-learn

    digits = load_digits()
    images = upsample_bilinear(np.asarray(digits.images, dtype=np.float64), IMAGE_SIZE)
    # The 8x8 values run 0..16; stretch to 0..255 and round half-to-even, as uint8 pixels.
    pixels = np.clip(np.rint(images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
    labels = np.asarray(digits.target, dtype=np.int64)
    position = np.zeros_like(labels)
    for c in range(10):
        members = np.flatnonzero(labels == c)
        position[members] = np.arange(members.size)
    bucket = position % 10
    masks = {"train": bucket >= 3, "val": bucket == 2, "test": bucket < 2}
    splits = {name: _split(pixels[mask], labels[mask]) for name, mask in masks.items()}
    return Dataset(
        name=BUILTIN_NAME,
        format="builtin",
        class_names=tuple(str(c) for c in range(10)),
        is_stand_in=True,
        val_origin="fixed rule (every 10th image of each class, offset 2)",
        **splits,
    )


def upsample_bilinear(images: npt.NDArray[np.float64], size: int) -> npt.NDArray[np.float64]:
    """Bilinear resize of (N, h, w) float64 images to (N, size, size), half-pixel centres.

    Same sampling as ``F.interpolate(mode="bilinear", align_corners=False)``, but written as
    separate float64 multiplies and adds (no BLAS, no fused multiply-add), so the rounded
    pixels, hence the built-in test-set digest, are the same on every machine.
    """

    def taps(
        n_in: int,
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        src = (np.arange(size, dtype=np.float64) + 0.5) * (n_in / size) - 0.5
        src = np.clip(src, 0.0, n_in - 1)
        low = np.floor(src).astype(np.intp)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, src - low

    y0, y1, wy = taps(images.shape[1])
    x0, x1, wx = taps(images.shape[2])
    rows = images[:, y0, :] * (1.0 - wy)[None, :, None] + images[:, y1, :] * wy[None, :, None]
    return rows[:, :, x0] * (1.0 - wx)[None, None, :] + rows[:, :, x1] * wx[None, None, :]


# --- MedMNIST .npz ---------------------------------------------------------------------------


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
    splits: dict[str, tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]] = {}
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
    class_names = _class_names(source, [lab for _, lab in splits.values()], known)
    val_origin = "file"
    if "val" not in splits:
        (train_x, train_y), (val_x, val_y) = _carve(*splits["train"], val_fraction, seed)
        splits["train"], splits["val"] = (train_x, train_y), (val_x, val_y)
        val_origin = f"carved from train ({val_fraction:.0%}, seed {seed})"
    return _dataset(
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
    _check_image_shape(source, key, chw.shape)
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


# --- MNIST-format IDX ------------------------------------------------------------------------


def load_idx(path: Path, *, seed: int = 0, val_fraction: float = 0.1) -> Dataset:
    """MNIST-format IDX files (``train-images-idx3-ubyte`` ... ``t10k-labels-idx1-ubyte``).

    Looked for in ``path``, ``path/raw`` and ``path/MNIST/raw`` (torchvision's layout), each
    either plain or ``.gz``. Validation is carved from train. Class names are the label values.
    """
    folder = _find_idx_dir(path)
    if folder is None:
        raise DataError(
            str(path),
            "holds no train-images-idx3-ubyte[.gz]",
            "give the folder with the four MNIST-format files (train-images-idx3-ubyte, "
            "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)",
        )
    splits: dict[str, tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]] = {}
    for split in ("train", "test"):
        image_file = _idx_file(folder, _IDX_FILES[split, "images"])
        label_file = _idx_file(folder, _IDX_FILES[split, "labels"])
        images = read_idx(image_file, ndim=3)
        labels = read_idx(label_file, ndim=1).astype(np.int64)
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                str(label_file),
                f"holds {labels.shape[0]} labels but {image_file.name} holds {images.shape[0]} images",
                "the files must come from the same release",
            )
        _check_image_shape(str(image_file), "images", (images.shape[0], 1, *images.shape[1:]))
        splits[split] = (np.ascontiguousarray(images[:, None]), labels)
    class_names = _class_names(str(folder), [lab for _, lab in splits.values()], None, generic="")
    splits["train"], splits["val"] = _carve(*splits["train"], val_fraction, seed)
    return _dataset(
        name=path.name or str(path),
        fmt="idx",
        class_names=class_names,
        splits=splits,
        val_origin=f"carved from train ({val_fraction:.0%}, seed {seed})",
    )


def read_idx(path: Path, ndim: int) -> npt.NDArray[np.uint8]:
    """Parse one unsigned-byte IDX file (plain or gzip) with ``ndim`` dimensions, strictly.

    Layout: two zero bytes, type byte 0x08, dimension count, one big-endian uint32 per dimension,
    then exactly prod(dims) bytes.
    """
    source = str(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                data = handle.read(_MAX_FILE_BYTES + 1)
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        # gzip.BadGzipFile is an OSError; a truncated stream ends in EOFError.
        raise DataError(
            source, f"cannot be read ({exc})", "re-download or re-extract the file"
        ) from exc
    if len(data) > _MAX_FILE_BYTES:
        raise DataError(source, f"is larger than {_MAX_FILE_BYTES} bytes", "is this an IDX file?")
    if len(data) < 4 or data[0:2] != b"\x00\x00":
        raise DataError(
            source, f"bad magic number {data[:4].hex() or 'empty'}", "is this an IDX file?"
        )
    if data[2] != _IDX_UBYTE or data[3] != ndim:
        raise DataError(
            source,
            f"magic {data[:4].hex()} says type 0x{data[2]:02x} with {data[3]} dimension(s)",
            f"expected unsigned bytes (0x08) with {ndim} dimension(s)",
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(source, "is truncated inside its header", "re-download the file")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(dims)
    if len(data) != expected:
        raise DataError(
            source,
            f"has {len(data)} bytes but its header {dims} needs {expected}",
            "the file is truncated or corrupt; re-download it",
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path: Path, array: npt.NDArray[np.uint8]) -> None:
    """Write a uint8 array as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    data = bytes([0, 0, _IDX_UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def _find_idx_dir(path: Path) -> Path | None:
    for folder in (path, path / "raw", path / "MNIST" / "raw"):
        name = _IDX_FILES["train", "images"]
        if (folder / name).is_file() or (folder / f"{name}.gz").is_file():
            return folder
    return None


def _idx_file(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(str(folder / name), "is missing (also looked for .gz)", "add the file")


def _download_mnist(root: Path) -> None:
    # Only on explicit request: training must never reach the network by itself.
    from torchvision.datasets import MNIST

    try:
        for train in (True, False):
            MNIST(str(root), train=train, download=True)
    except (OSError, RuntimeError) as exc:  # URLError/HTTPError are OSErrors; mirrors: Runtime
        raise DataError(
            str(root),
            f"MNIST download failed ({type(exc).__name__}: {exc})",
            "copy the four IDX files there by hand and run without --download",
        ) from exc


# --- image folders ---------------------------------------------------------------------------


def load_folder(path: Path, *, seed: int = 0, val_fraction: float = 0.1) -> Dataset:
    """``root/<class>/*.png|jpg``, or ``root/{train,val,test}/<class>/...`` when those exist.

    Images are converted to 8-bit grayscale (or RGB if any image has colour) and resized to
    28x28 with bilinear filtering. Without ``train``/``test`` sub-folders, each class is split
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
    splits: dict[str, tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]] = {}
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
        splits["train"], splits["val"] = _carve(*splits["train"], val_fraction, seed)
        val_origin = f"carved from train ({val_fraction:.0%}, seed {seed})"
    elif not has_splits:
        val_origin = f"split per class from the folder ({val_fraction:.0%}, seed {seed})"
    return _dataset(
        name=path.name or str(path),
        fmt="folder",
        class_names=tuple(class_names),
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
    """Decode, bring to 28x28 (bilinear) right away, return (3, 28, 28) pixels and "has colour".

    Resizing per file keeps memory at 2 KiB per image however large the originals are. Gray
    images are resized in "L" and replicated, which equals converting them later.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as handle:
            handle.load()
            colour = handle.mode not in ("1", "L", "LA", "I", "I;16", "F")
            image = handle.convert("RGB" if colour else "L")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise DataError(
            str(path), f"is not a readable image ({exc})", "remove or replace it"
        ) from exc
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    if colour:
        return np.ascontiguousarray(array.transpose(2, 0, 1)), True
    return np.repeat(array[None], 3, axis=0), False


# --- shared checks ---------------------------------------------------------------------------


def _check_image_shape(source: str, key: str, shape: tuple[int, ...]) -> None:
    _, _, height, width = shape
    if height != width or not MIN_INPUT_SIZE <= height <= MAX_INPUT_SIZE:
        raise DataError(
            source,
            f"{key} are {height}x{width}",
            f"images must be square, {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE} pixels a side",
        )


def _class_names(
    source: str,
    label_arrays: Sequence[npt.NDArray[np.int64]],
    known: tuple[str, ...] | None,
    generic: str = "class_",
) -> tuple[str, ...]:
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


def _carve(
    images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64], fraction: float, seed: int
) -> tuple[
    tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]],
    tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]],
]:
    """Split ``fraction`` of train off as validation, by a permutation seeded with ``seed``."""
    n = labels.shape[0]
    n_val = max(1, round(n * fraction))
    if n - n_val < 1:
        raise DataError("train split", f"{n} image(s) are too few to carve a validation split")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])


def _split(images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64]) -> Split:
    # np.require copies only when needed: IDX arrays are read-only views of the file's bytes.
    return Split(
        torch.from_numpy(np.require(images, np.uint8, ["C", "W"])),
        torch.from_numpy(np.require(labels, np.int64, ["C", "W"])),
    )


def _dataset(
    *,
    name: str,
    fmt: str,
    class_names: tuple[str, ...],
    splits: dict[str, tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]],
    val_origin: str,
) -> Dataset:
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
        **{split: _split(*splits[split]) for split in SPLITS},
    )
