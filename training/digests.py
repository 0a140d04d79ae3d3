"""Content digests that do not depend on a file format: dataset splits and tensor sets.

The checkpoint's own identity is the SHA-256 of its file bytes (the registry computes that). The
digests here answer different questions, so they hash a *canonical byte layout* instead of a file:

* "was this accuracy measured on this test set?" -> ``split_digest`` of the test split, whether
  the images came from IDX, ``.npz`` or PNG files;
* "are these the same weights?" -> ``tensor_digest``, equal for the same tensors saved by any
  writer, with any header ordering.

Both layouts are versioned by a domain-separation prefix; changing a layout means a new prefix.
Numpy only, no torch, so the registry can recompute them.

Split layout ``dataset-split/v1``::

    b"dataset-split/v1\\n"
    uint32 LE  N, C, H, W
    N*C*H*W    uint8 pixels, NCHW, C order
    N          int64 LE labels

Tensor-set layout ``tensor-set/v1``::

    b"tensor-set/v1\\n"
    uint32 LE  number of tensors
    per tensor, in ascending order of UTF-8 name bytes:
        uint32 LE  len(name), name (UTF-8)
        uint32 LE  len(dtype), dtype (ASCII safetensors code, e.g. "F32")
        uint32 LE  ndim, then uint64 LE per dimension
        uint64 LE  byte length, then the values little-endian, C order
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt

SPLIT_LAYOUT: Final = "dataset-split/v1"
TENSOR_LAYOUT: Final = "tensor-set/v1"

# numpy dtype -> safetensors dtype code (the subset a checkpoint of ours can contain, plus ints).
SAFETENSORS_DTYPES: Final[dict[str, str]] = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}


def split_digest(images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64]) -> str:
    """SHA-256 hex of one split in the ``dataset-split/v1`` layout (see module docstring)."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 NCHW, got {images.dtype} {images.shape}")
    if labels.dtype != np.int64 or labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be int64 of shape ({images.shape[0]},), got {labels.shape}")
    h = hashlib.sha256()
    h.update(SPLIT_LAYOUT.encode("ascii") + b"\n")
    h.update(struct.pack("<4I", *images.shape))
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return h.hexdigest()


def tensor_digest(
    tensors: Mapping[str, npt.NDArray[np.generic]], dtype_codes: Mapping[str, str] | None = None
) -> str:
    """SHA-256 hex of a named tensor set in the ``tensor-set/v1`` layout.

    ``dtype_codes`` overrides the dtype code of a tensor whose numpy dtype does not name it (a
    bfloat16 tensor passed as its raw uint16 view, for instance).
    """
    overrides = dict(dtype_codes or {})
    h = hashlib.sha256()
    h.update(TENSOR_LAYOUT.encode("ascii") + b"\n")
    h.update(struct.pack("<I", len(tensors)))
    for name in sorted(tensors, key=lambda n: n.encode("utf-8")):
        array = np.asarray(tensors[name])
        code = overrides.get(name) or SAFETENSORS_DTYPES.get(array.dtype.name)
        if code is None:
            raise ValueError(
                f"tensor {name!r} has dtype {array.dtype}, which has no safetensors code"
            )
        raw_name = name.encode("utf-8")
        h.update(struct.pack("<I", len(raw_name)) + raw_name)
        h.update(struct.pack("<I", len(code)) + code.encode("ascii"))
        h.update(struct.pack(f"<I{array.ndim}Q", array.ndim, *array.shape))
        payload = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        h.update(struct.pack("<Q", len(payload)) + payload)
    return h.hexdigest()
