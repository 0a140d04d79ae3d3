"""Datasets people already have, read into one in-memory form, checked before training starts.

Every loader returns a ``Dataset`` (``types``): uint8 NCHW images and int64 labels per split
(train, val, test), class names, a name, and ``is_stand_in``. One module per source format:
MNIST-style IDX files, optionally ``.gz`` (``idx``), MedMNIST ``.npz`` files (``medmnist``),
folders of images with one sub-folder per class (``folders``), and a built-in stand-in that
needs no network (``builtin``); the checks they share are in ``checks`` and ``load_dataset``
(``load``) picks among them. Anything malformed raises ``DataError`` naming the file, key or
value and what to do; nothing is unpickled.
"""

from training.data.builtin import BUILTIN_NAME, load_builtin, upsample_bilinear
from training.data.folders import FOLDER_TEST_FRACTION, IMAGE_SUFFIXES, load_folder
from training.data.idx import load_idx, read_idx, write_idx
from training.data.load import load_dataset
from training.data.medmnist import MEDMNIST_CLASS_NAMES, load_npz
from training.data.types import IMAGE_SIZE, SPLITS, Dataset, Split

__all__ = [
    "BUILTIN_NAME",
    "FOLDER_TEST_FRACTION",
    "IMAGE_SIZE",
    "IMAGE_SUFFIXES",
    "MEDMNIST_CLASS_NAMES",
    "SPLITS",
    "Dataset",
    "Split",
    "load_builtin",
    "load_dataset",
    "load_folder",
    "load_idx",
    "load_npz",
    "read_idx",
    "upsample_bilinear",
    "write_idx",
]
