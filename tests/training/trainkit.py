"""Tiny datasets written in the real file formats, independently of ``training.data``.

The writers here use ``struct``, ``gzip``, ``np.savez`` and PIL directly, so a bug in the
package's own readers cannot be hidden by the same bug in a shared writer.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt


def pattern_images(
    n: int, num_classes: int, *, size: int = 28, channels: int = 1, seed: int = 0
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """``n`` learnable images (N, H, W) or (N, H, W, C): class c lights up horizontal band c."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % num_classes
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, size, size, channels), dtype=np.uint8)
    band = size // num_classes
    for i, c in enumerate(labels):
        images[i, c * band : (c + 1) * band, 4 : size - 4, :] = 200 + (c * 7) % 50
    if channels == 1:
        return images[..., 0], labels
    return images, labels


def idx_bytes(array: npt.NDArray[np.uint8]) -> bytes:
    """An unsigned-byte IDX file: 0, 0, 0x08, ndim, big-endian uint32 dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(
    folder: Path,
    train: tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]],
    test: tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]],
    *,
    gz: bool = False,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = {
        "train-images-idx3-ubyte": train[0],
        "train-labels-idx1-ubyte": train[1].astype(np.uint8),
        "t10k-images-idx3-ubyte": test[0],
        "t10k-labels-idx1-ubyte": test[1].astype(np.uint8),
    }
    for name, array in names.items():
        data = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def write_npz(
    path: Path,
    *,
    num_classes: int = 3,
    sizes: tuple[int, int, int] | tuple[int, int] = (60, 15, 30),
    channels: int = 1,
    size: int = 28,
    column_labels: bool = True,
    **overrides: object,
) -> Path:
    """A MedMNIST-style archive; ``sizes`` of length 2 means no validation split."""
    arrays: dict[str, object] = {}
    names = ("train", "val", "test") if len(sizes) == 3 else ("train", "test")
    for i, (split, n) in enumerate(zip(names, sizes, strict=True)):
        images, labels = pattern_images(n, num_classes, size=size, channels=channels, seed=i)
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels[:, None] if column_labels else labels
    arrays.update(overrides)
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def write_png_folder(
    root: Path,
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int64],
    class_names: list[str],
    *,
    suffix: str = ".png",
) -> Path:
    from PIL import Image

    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / class_names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"img_{i:04d}{suffix}")
    return root
