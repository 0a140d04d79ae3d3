"""``load_dataset``: from a path (or none) and a format name to a checked ``Dataset``.

The CLI, the benchmarks and the tests all start here, so the rules for guessing a format and
for the options every format shares (``val_fraction``, ``--download``) live in one function.
"""

from __future__ import annotations

from pathlib import Path

from training.config import FORMATS
from training.data.builtin import load_builtin
from training.data.folders import load_folder
from training.data.idx import download_mnist, find_idx_dir, load_idx
from training.data.medmnist import load_npz
from training.data.types import Dataset
from training.errors import DataError


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
        download_mnist(root)
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
            fmt = "idx" if find_idx_dir(root) is not None else "folder"
    if fmt == "npz":
        return load_npz(root, seed=seed, val_fraction=val_fraction)
    if fmt == "idx":
        return load_idx(root, seed=seed, val_fraction=val_fraction)
    return load_folder(root, seed=seed, val_fraction=val_fraction)
