"""MNIST-format IDX files, the layout MNIST and its many look-alikes ship in.

The parser is strict (magic, type byte, dimension count, exact length, a size bound on gzip
output) because these files arrive from mirrors and hand copies: a truncated or mislabelled file
must stop training with the file named, not train on garbage. ``write_idx`` exists for tests and
benchmarks that need real files.
"""

from __future__ import annotations

import gzip
import math
import struct
import zipfile
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from training.data.checks import carve, check_image_shape, infer_class_names, make_dataset
from training.data.types import Dataset, SplitArrays
from training.errors import DataError

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


def load_idx(path: Path, *, seed: int = 0, val_fraction: float = 0.1) -> Dataset:
    """MNIST-format IDX files (``train-images-idx3-ubyte`` ... ``t10k-labels-idx1-ubyte``).

    Looked for in ``path``, ``path/raw`` and ``path/MNIST/raw`` (torchvision's layout), each
    either plain or ``.gz``. Validation is carved from train. Class names are the label values.
    """
    folder = find_idx_dir(path)
    if folder is None:
        raise DataError(
            str(path),
            "holds no train-images-idx3-ubyte[.gz]",
            "give the folder with the four MNIST-format files (train-images-idx3-ubyte, "
            "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)",
        )
    splits: dict[str, SplitArrays] = {}
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
        check_image_shape(str(image_file), "images", (images.shape[0], 1, *images.shape[1:]))
        splits[split] = (np.ascontiguousarray(images[:, None]), labels)
    class_names = infer_class_names(
        str(folder), [lab for _, lab in splits.values()], None, generic=""
    )
    splits["train"], splits["val"] = carve(*splits["train"], val_fraction, seed)
    return make_dataset(
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


def find_idx_dir(path: Path) -> Path | None:
    """The folder holding the IDX training images: ``path``, ``path/raw`` or ``path/MNIST/raw``."""
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


def download_mnist(root: Path) -> None:
    """Fetch MNIST into ``root`` through torchvision (torchvision's own layout, ``MNIST/raw``)."""
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
