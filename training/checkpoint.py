"""Checkpoints as safetensors files whose bytes depend only on the weights and the spec.

A model's identity in the registry is the SHA-256 of the file bytes, so two saves of the same
weights must give the same bytes. ``safetensors.torch.save`` does not: it stores ``__metadata__``
in hash-map order, which changes from one process to the next. We therefore write the (simple,
documented) safetensors layout ourselves, with a fixed key order, and read it back only through
``safetensors.torch.load`` on bytes: never ``torch.load``, never pickle.

Both directions go through the product's one header check,
``modelformat.header.inspect_checkpoint``: a save refuses to write a file the registry would
refuse, and a load refuses what the gate would.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from torch import nn

from modelformat.header import CheckedCheckpoint, inspect_checkpoint
from modelformat.spec import TENSOR_DTYPE, ModelSpec
from training.digests import tensor_digest
from training.errors import MalformedCheckpoint, SpecError
from training.model import LeNet5, build_model

# safetensors pads the header with spaces so the data section starts 8-byte aligned.
_ALIGN = 8

_TORCH_DTYPE_CODES: dict[torch.dtype, str] = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def checkpoint_bytes(model: nn.Module, spec: ModelSpec) -> bytes:
    """Serialise ``model``'s weights and ``spec`` to safetensors bytes, deterministically.

    Header: ``__metadata__`` first (keys in ``METADATA_KEYS`` order), then tensors sorted by name,
    compact JSON, space-padded to 8 bytes. Data: float32 little-endian, in the same name order.
    """
    state = model.state_dict()
    expected = spec.tensor_specs()
    if set(state) != set(expected):
        raise SpecError(
            "tensors",
            sorted(set(state) ^ set(expected)),
            "the model's state_dict does not match the spec's architecture",
        )
    header: dict[str, object] = {"__metadata__": spec.to_metadata()}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(state):
        _, shape = expected[name]
        tensor = state[name].detach().to("cpu", torch.float32).contiguous()
        if tuple(tensor.shape) != shape:
            raise SpecError(name, list(tensor.shape), f"shape must be {list(shape)}")
        if not torch.isfinite(tensor).all():
            raise MalformedCheckpoint(
                "non_finite_weights",
                f"tensor {name} holds NaN or infinity",
                "training diverged: lower the learning rate or check the data, then train again",
                key=name,
            )
        raw = tensor.numpy().astype("<f4", copy=False).tobytes()
        header[name] = {
            "dtype": TENSOR_DTYPE,
            "shape": list(shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % _ALIGN)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def save_checkpoint(model: nn.Module, spec: ModelSpec, path: str | os.PathLike[str]) -> str:
    """Write the checkpoint atomically (temp file + rename); return the SHA-256 hex of its bytes."""
    data = checkpoint_bytes(model, spec)
    # Refuse to write what we could not read back: the registry would refuse it later anyway.
    inspect_checkpoint(data)
    atomic_write(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def load_checkpoint_bytes(
    data: bytes, checked: CheckedCheckpoint | None = None
) -> tuple[LeNet5, ModelSpec]:
    """Rebuild the network from checkpoint ``data`` (the very bytes that were hashed).

    The header is validated first by ``inspect_checkpoint`` (pickles, layout, names, dtypes,
    shapes, metadata), unless ``checked`` is what it already returned for these bytes: the gate
    inspects once and hands the result on. Then the tensors are read by ``safetensors`` from the
    same bytes in memory and loaded with ``strict=True``. The model is returned on CPU in
    evaluation mode. Raises an ``InvalidCheckpoint`` for every file it refuses.
    """
    if checked is None:
        checked = inspect_checkpoint(data)
    elif not checked.describes(data):
        # A caller's bug, not bad input: the result it holds was computed for other bytes.
        raise ValueError(
            "the CheckedCheckpoint passed to load_checkpoint_bytes describes other bytes "
            f"({checked.size} bytes, header sha256 {checked.header_sha256[:12]}...); "
            "pass the result of inspect_checkpoint for these bytes, or none"
        )
    try:
        tensors = safetensors_load(bytes(data))
    except SafetensorError as exc:
        raise MalformedCheckpoint(
            "unreadable_tensors", f"safetensors could not read the tensors ({exc})"
        ) from exc
    model = build_model(checked.spec)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model, checked.spec


def canonical_tensor_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 hex of the weights in the ``tensor-set/v1`` layout (see ``training.digests``).

    Equal for equal weights whatever file they came from: header order, padding and file format
    do not enter it.
    """
    arrays: dict[str, np.ndarray] = {}
    codes: dict[str, str] = {}
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        code = _TORCH_DTYPE_CODES.get(t.dtype)
        if code is None:
            raise MalformedCheckpoint(
                "bad_dtype",
                f"tensor {name} has dtype {t.dtype}, which has no digest layout",
                f"give tensors of the dtypes {', '.join(sorted(_TORCH_DTYPE_CODES.values()))}",
            )
        # numpy has no bfloat16: hash its raw 16-bit patterns under the BF16 code.
        arrays[name] = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
        codes[name] = code
    return tensor_digest(arrays, codes)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file and rename: readers see old bytes or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # O_EXCL: never write through a file (or link) someone else put there; mode 0o666 lets the
    # umask decide permissions, as a plain open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
