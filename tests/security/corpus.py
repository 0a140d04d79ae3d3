"""Builders for hostile model files, each with the outcome the registry must produce.

Every ``Case`` builds its bytes from a ``Canary``: a session-wide directory that nothing may write
into and an environment-variable prefix that nothing may set. Each code-carrying payload tries to
leave a trace there named after its case (a file, or a variable), so "nothing executed" is a check
on the file system and the environment, not only on which exception came back. The payloads are
real: ``detonate`` (run in a child process by a test) proves each one fires when it is unpickled.

The safetensors builders write the documented layout themselves (8-byte little-endian header
length, JSON header, raw tensor bytes) so that every malformed case breaks exactly one rule, and
each case names that rule (``MalformedCheckpoint.problem``) and, for metadata, the key at fault.
"""

from __future__ import annotations

import copy
import copyreg
import io
import json
import math
import os
import pickle
import shlex
import struct
import subprocess
import sys
import time
import timeit
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import lenetkit
import numpy as np

from modelformat.header import DEFAULT_MAX_HEADER_BYTES, MalformedCheckpoint
from registry.errors import InvalidCheckpoint, PickleRejected

# --- canaries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Canary:
    """Where payloads try to leave a trace: files under ``root``, variables named ``env_prefix*``."""

    root: Path
    env_prefix: str

    def file(self, name: str) -> str:
        return str(self.root / name)

    def env(self, name: str) -> str:
        return self.env_prefix + name.upper().replace("-", "_")

    def touch(self, name: str) -> str:
        """A shell command that creates the canary file ``name``."""
        return f"touch {shlex.quote(self.file(name))}"

    def python(self, name: str) -> str:
        """Python source that creates the canary file ``name``."""
        return f"open({self.file(name)!r}, 'w').close()"

    def fired(self) -> list[str]:
        """Every trace a payload left: canary files and canary variables."""
        files = sorted(p.name for p in self.root.iterdir()) if self.root.exists() else []
        variables = sorted(k for k in os.environ if k.startswith(self.env_prefix))
        return [f"file {f}" for f in files] + [f"env {v}" for v in variables]


# --- safetensors files, written by hand ----------------------------------------------------------

TensorSpecs = dict[str, tuple[str, tuple[int, ...]]]
DTYPE_SIZES = {"F32": 4, "F16": 2, "F64": 8, "I64": 8, "BOOL": 1, "X9": 4}
CLASS_NAMES = ["benign", "malignant"]


def lenet_specs(c: int = 1, size: int = 28, k: int = 2) -> TensorSpecs:
    """The LeNet-5 tensors, written out from the network's definition (not from the code)."""
    return {name: ("F32", shape) for name, shape in lenetkit.lenet_shapes(c, size, k).items()}


def lenet_metadata(**overrides: str) -> dict[str, str]:
    """lenetkit's metadata for the two-class network, with ``overrides`` replacing or adding keys."""
    meta = lenetkit.lenet_metadata(k=2, names=CLASS_NAMES, dataset="synthetic-security-corpus")
    return {**meta, **overrides}


def tensor_bytes(dtype: str, shape: tuple[int, ...], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    if dtype == "F32":
        return (rng.standard_normal(shape) * 0.1).astype("<f4").tobytes()
    return rng.integers(0, 2, math.prod(shape) * DTYPE_SIZES[dtype], dtype=np.uint8).tobytes()


def layout(
    specs: TensorSpecs, metadata: Mapping[str, str] | None, seed: int = 0
) -> tuple[dict[str, Any], bytes]:
    """A header (dict) and data section whose offsets tile the data exactly, in name order."""
    header: dict[str, Any] = {} if metadata is None else {"__metadata__": dict(metadata)}
    chunks, offset = [], 0
    for n, (name, (dtype, shape)) in enumerate(sorted(specs.items())):
        raw = tensor_bytes(dtype, shape, seed + n)
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    return header, b"".join(chunks)


def frame(header: dict[str, Any] | bytes, data: bytes = b"", pad: bytes = b" ") -> bytes:
    """``[u64 LE length][header, padded to 8 bytes with pad][data]``."""
    raw = (
        header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    )
    raw += pad * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def valid(seed: int = 0, **meta: str) -> bytes:
    return frame(*layout(lenet_specs(), lenet_metadata(**meta), seed))


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def edit_header(fn: Callable[[dict[str, Any]], object], seed: int = 0) -> bytes:
    """A valid file whose header ``fn`` changed in place (data section untouched)."""
    header, data = layout(lenet_specs(), lenet_metadata(), seed)
    header = copy.deepcopy(header)
    fn(header)
    return frame(header, data)


def respec(fn: Callable[[TensorSpecs], object], **meta: str) -> bytes:
    """A file laid out consistently (offsets match sizes) for tensor specs that ``fn`` changed."""
    specs = lenet_specs()
    fn(specs)
    return frame(*layout(specs, lenet_metadata(**meta)))


def with_metadata(**values: str) -> bytes:
    return valid(**values)


def raw_header(text: bytes, data: bytes | None = None) -> bytes:
    """A header given as raw bytes, followed by the data of a valid file."""
    return frame(text, layout(lenet_specs(), lenet_metadata())[1] if data is None else data)


def header_text(mutate: Callable[[str], str]) -> bytes:
    """The valid header as JSON text, changed textually (for what json.dumps cannot write)."""
    header, data = layout(lenet_specs(), lenet_metadata())
    return frame(mutate(json.dumps(header, separators=(",", ":"))).encode(), data)


def shift_after(header: dict[str, Any], name: str, by: int) -> None:
    """Move every tensor that starts at or after ``name``'s end by ``by`` bytes."""
    end = header[name]["data_offsets"][1]
    for key, entry in header.items():
        if key != "__metadata__" and entry["data_offsets"][0] >= end:
            entry["data_offsets"] = [o + by for o in entry["data_offsets"]]


# --- pickles ---------------------------------------------------------------------------------


class Reduce:
    """Pickles as ``callable(*args)``: what an attacker's ``__reduce__`` returns."""

    def __init__(self, fn: Callable[..., object], *args: object) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return self.fn, self.args


class ReduceEx(Reduce):
    """The same through ``__reduce_ex__``, which pickle prefers over ``__reduce__``."""

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        raise AssertionError("pickle must call __reduce_ex__")

    def __reduce_ex__(self, protocol: object) -> tuple[Callable[..., object], tuple[object, ...]]:
        return self.fn, self.args


def dumps(obj: object, protocol: int) -> bytes:
    return pickle.dumps({"state_dict": obj}, protocol=protocol)


def p0_line(text: str) -> bytes:
    """Protocol 0 UNICODE opcode for ``text`` (raw-unicode-escape up to the newline)."""
    assert "\n" not in text and "\\" not in text
    return b"V" + text.encode("raw_unicode_escape") + b"\n"


def classic_os_system(c: Canary, name: str) -> bytes:
    """The textbook protocol 0 payload: ``cos\\nsystem\\n(V<cmd>\\ntR.``."""
    return b"cos\nsystem\n(" + p0_line(c.touch(name)) + b"tR."


def inst_opcode(c: Canary, name: str) -> bytes:
    """INST (``i``) calls ``module.name(*args)`` with no REDUCE in the stream."""
    return b"(" + p0_line(c.touch(name)) + b"ios\nsystem\n."


def obj_opcode(c: Canary, name: str) -> bytes:
    """OBJ (``o``, protocol 1) calls its first stack item with the rest: again no REDUCE."""
    return b"(cposix\nsystem\n" + p0_line(c.touch(name)) + b"o."


def getattr_chain(c: Canary, name: str) -> bytes:
    """``getattr(__import__('os'), 'system')(cmd)``: only builtins are named in the stream."""
    return (
        b"\x80\x02cbuiltins\ngetattr\n"
        + b"cbuiltins\n__import__\n"
        + b"X\x02\x00\x00\x00os\x85R"  # __import__('os')
        + b"X\x06\x00\x00\x00system\x86R"  # getattr(os, 'system')
        + _binunicode(c.touch(name))
        + b"\x85R."
    )


def getattr_environ(c: Canary, name: str) -> bytes:
    """``getattr(os.environ, 'setdefault')(VAR, '1')``: sets a canary variable, runs nothing."""
    return (
        b"\x80\x02cbuiltins\ngetattr\ncos\nenviron\n"
        + _binunicode("setdefault")
        + b"\x86R"
        + _binunicode(c.env(name))
        + _binunicode("1")
        + b"\x86R."
    )


def torch_rebuild_tensor(c: Canary, name: str) -> bytes:
    """``torch._utils._rebuild_tensor_v2`` (on every scanner's allow-list) with a payload as its
    storage. The arguments are built first and kept in the memo, so the payload fires whether or
    not torch can be imported."""
    return (
        b"\x80\x02("
        + b"cposix\nsystem\n"
        + _binunicode(c.touch(name))
        + b"\x85R"  # the "storage": os.system(cmd)
        + b"K\x00K\x01\x85K\x01\x85\x89ccollections\nOrderedDict\n)Rt"
        + b"q\x000"  # memo[0] = args; pop
        + b"ctorch._utils\n_rebuild_tensor_v2\nh\x00R."
    )


def _binunicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def nested_pickle(c: Canary, name: str) -> bytes:
    inner = pickle.dumps(Reduce(os.system, c.touch(name)), protocol=2)
    return dumps(Reduce(pickle.loads, inner), 4)


def nested_pickle_zlib(c: Canary, name: str) -> bytes:
    inner = zlib.compress(pickle.dumps(Reduce(os.system, c.touch(name)), protocol=4))
    return dumps(Reduce(pickle.loads, Reduce(zlib.decompress, inner)), 2)


def copyreg_popen(c: Canary, name: str) -> bytes:
    # copyreg._reconstructor(cls, base, state) calls base.__init__(obj, state): Popen(["touch", f]).
    argv = ["touch", c.file(name)]
    return dumps(Reduce(copyreg._reconstructor, subprocess.Popen, subprocess.Popen, argv), 2)  # type: ignore[attr-defined]


def timeit_exec(c: Canary, name: str) -> bytes:
    return dumps(Reduce(timeit.timeit, c.python(name), "pass", time.perf_counter, 1), 3)


def torch_save(c: Canary, name: str, *, zipped: bool) -> bytes:
    import torch

    buffer = io.BytesIO()
    # The payload comes before the tensor, so it fires before torch is even imported.
    payload = {"hook": Reduce(os.system, c.touch(name)), "state_dict": {"w": torch.zeros(2)}}
    torch.save(payload, buffer, _use_new_zipfile_serialization=zipped)
    return buffer.getvalue()


def v_line_polyglot(c: Canary, name: str, *, valid_header: bool) -> bytes:
    """Bytes that are a protocol 0 pickle *and* frame as safetensors.

    The first 8 bytes ``V<b1>\\x00\\x00\\x00\\x00\\x00\\x00`` are a UNICODE opcode to a pickle and
    a header length of ``0x56 + 256 * b1`` to safetensors; the string runs to the first newline, which the JSON
    header holds as whitespace before its closing brace. The pickle continues after the brace in
    the data section: with ``valid_header`` it is a complete LeNet checkpoint whose first tensor's
    bytes are the payload, a file that pickle.loads executes and safetensors loads as weights.
    """
    header, data = layout(lenet_specs(), lenet_metadata())
    body = json.dumps(header, separators=(",", ":"))[:-1].encode()
    # The smallest length of the form 0x56 + 256 * b1 that the header fits in (b1 != newline).
    b1 = next(b for b in range(1, 256) if b != 0x0A and 0x56 + (b << 8) >= len(body) + 2)
    length = 0x56 | (b1 << 8)
    head = body + b" " * (length - len(body) - 2) + b"\n}"
    assert len(head) == length and head.count(b"\n") == 1
    # The pickle after "V<8 bytes + header up to \n>": "}" pushed an empty dict; pop it and the
    # string, then the payload.
    payload = b"00" + classic_os_system(c, name)
    if not valid_header:
        return struct.pack("<Q", length) + b"{\n}" + payload + b" " * length
    # The payload overwrites the first tensors' bytes: to safetensors they are just weights.
    out = struct.pack("<Q", length) + head + payload + data[len(payload) :]
    assert out[:1] == b"V" and out[2:8] == bytes(6) and len(out) == 8 + length + len(data)
    return out


# --- zips ----------------------------------------------------------------------------------------


def zip_bomb(size: int = 2 << 30) -> bytes:
    """One stored-as-deflate member of ``size`` zero bytes (2 GiB), about 2 MB on the wire.

    Built without ever holding the expansion: zlib output for 1 MiB of zeros after a full flush
    is the same every time, so the stream is that block repeated. The CRC is the real one.
    """
    chunk = 1 << 20
    assert size % chunk == 0 and size < 1 << 32
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = z.compress(bytes(chunk)) + z.flush(zlib.Z_FULL_FLUSH)
    stream = block * (size // chunk) + z.flush()
    crc = 0
    zeros = bytes(chunk)
    for _ in range(size // chunk):
        crc = zlib.crc32(zeros, crc)
    name = b"archive/data.pkl"
    local = struct.pack(
        "<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(stream), size, len(name), 0
    )
    central = struct.pack(
        "<4s6H3I5H2I",
        b"PK\x01\x02",
        20,
        20,
        0,
        8,
        0,
        0,
        crc,
        len(stream),
        size,
        len(name),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    cd_offset = len(local) + len(name) + len(stream)
    cd_size = len(central) + len(name)
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 1, 1, cd_size, cd_offset, 0)
    return local + name + stream + central + name + end


def safetensors_in_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.safetensors", valid())
    return buffer.getvalue()


# --- huge headers ----------------------------------------------------------------------------


ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def many_entries(count: int) -> bytearray:
    """A header of ``count`` distinct keys (``"abcd":0,``, 9 bytes each), written with numpy."""
    alphabet = np.frombuffer(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", np.uint8
    )
    assert count <= 64**4
    n = 1 + 9 * count
    out = bytearray(8 + n)
    out[:8] = struct.pack("<Q", n)
    rows = np.frombuffer(out, np.uint8, 9 * count, 9).reshape(count, 9)
    i = np.arange(count)
    rows[:] = np.frombuffer(b'"....":0,', np.uint8)
    for column, shift in zip((1, 2, 3, 4), (18, 12, 6, 0), strict=True):
        rows[:, column] = alphabet[(i >> shift) & 63]
    out[8] = ord("{")
    out[-1] = ord("}")
    return out


def many_tensors_under_cap(count: int = 60_000) -> bytes:
    """As many (empty) tensor entries as fit under the 1 MiB header cap."""
    entries = ",".join(f'"t{i}":{{}}' for i in range(count))
    text = ("{" + entries + "}").encode()
    assert len(text) < DEFAULT_MAX_HEADER_BYTES
    return frame(text)


# --- the cases -----------------------------------------------------------------------------------

Outcome = type[InvalidCheckpoint] | None


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Canary, str], bytes | bytearray]
    refused: Outcome  # the exception inspect_checkpoint and Gate.admit raise; None: accepted
    problem: str | None = None  # MalformedCheckpoint.problem
    key: str | None = None  # MalformedCheckpoint.key (metadata cases)
    verify_status: int = 422  # POST /verify (raw body)
    register_status: int = 422  # POST /models
    detonate: str | None = None  # how a careless loader runs it: "pickle", "pickles", "zip"
    # Peak Python allocation while inspect_checkpoint refuses it: the 1 MiB header cap + 8 MiB.
    peak_bytes: int = DEFAULT_MAX_HEADER_BYTES + (8 << 20)

    @property
    def code(self) -> str | None:
        if self.refused is None:
            return None
        return "pickle_rejected" if self.refused is PickleRejected else "invalid_checkpoint"


def _pickle(id: str, build: Callable[[Canary, str], bytes], how: str = "pickle") -> Case:
    return Case(id, build, PickleRejected, detonate=how)


def _bad(id: str, problem: str, build: Callable[[], bytes | bytearray], **kw: Any) -> Case:
    return Case(id, lambda c, n: build(), MalformedCheckpoint, problem, **kw)


def _meta(id: str, key: str | None, build: Callable[[], bytes]) -> Case:
    return Case(id, lambda c, n: build(), MalformedCheckpoint, "bad_metadata", key)


def _set(entry: str, **fields: object) -> Callable[[dict[str, Any]], object]:
    return lambda h: h[entry].update(fields)


def _truncated(end: Callable[[bytes], int]) -> Callable[[], bytes]:
    def build() -> bytes:
        data = valid()
        return data[: end(data)]

    return build


def _header_len(data: bytes) -> int:
    return int(struct.unpack("<Q", data[:8])[0])


def _rename(h: dict[str, Any]) -> None:
    h["conv1.weights"] = h.pop("conv1.weight")


def _swap_offsets(h: dict[str, Any]) -> None:
    a, b = h["fc2.bias"]["data_offsets"], h["fc2.weight"]["data_offsets"]
    h["fc2.bias"]["data_offsets"], h["fc2.weight"]["data_offsets"] = b, a


def _overlap(h: dict[str, Any]) -> None:
    # conv1.weight starts 8 bytes before conv1.bias ends: both read those 8 bytes.
    start, end = h["conv1.weight"]["data_offsets"]
    h["conv1.weight"]["data_offsets"] = [start - 8, end - 8]


def _gap(h: dict[str, Any]) -> None:
    shift_after(h, "conv1.bias", 4)


def _std(values: list[float] | str) -> str:
    std = values if isinstance(values, str) else json.dumps(values)
    return '{"mean":[0.5],"std":' + std + "}"


def _poisoned(tensor: str, index: int, value: float) -> Callable[[], bytes]:
    """A valid file with one weight of ``tensor`` replaced by ``value`` (NaN, an infinity)."""

    def build() -> bytes:
        header, data = layout(lenet_specs(), lenet_metadata())
        at = header[tensor]["data_offsets"][0] + 4 * index
        return frame(header, data[:at] + struct.pack("<f", value) + data[at + 4 :])

    return build


def _pickle_after_valid(c: Canary, n: str) -> bytes:
    return valid() + dumps(Reduce(os.system, c.touch(n)), 4)


def _pickle_before_valid(c: Canary, n: str) -> bytes:
    return dumps(Reduce(os.system, c.touch(n)), 4) + valid()


CASES: list[Case] = [
    # pickles: every protocol, every way of calling something, and scanner bypasses
    _pickle("pickle-p0-cos-system", classic_os_system),
    _pickle("pickle-p0-reduce-os-system", lambda c, n: dumps(Reduce(os.system, c.touch(n)), 0)),
    _pickle("pickle-p1-obj-opcode", obj_opcode),
    _pickle("pickle-p0-inst-opcode", inst_opcode),
    _pickle("pickle-p2-reduce-os-system", lambda c, n: dumps(Reduce(os.system, c.touch(n)), 2)),
    _pickle("pickle-p4-reduce-os-system", lambda c, n: dumps(Reduce(os.system, c.touch(n)), 4)),
    _pickle("pickle-p5-reduce-os-system", lambda c, n: dumps(Reduce(os.system, c.touch(n)), 5)),
    _pickle("pickle-p4-builtins-exec", lambda c, n: dumps(Reduce(exec, c.python(n)), 4)),
    _pickle("pickle-p2-builtins-eval", lambda c, n: dumps(Reduce(eval, c.python(n)), 2)),
    _pickle("pickle-p4-open-write", lambda c, n: dumps(Reduce(open, c.file(n), "w"), 4)),
    _pickle(
        "pickle-p5-subprocess-popen",
        lambda c, n: dumps(Reduce(subprocess.Popen, ["touch", c.file(n)]), 5),
    ),
    _pickle("pickle-nested-pickle-loads", nested_pickle),
    _pickle("pickle-nested-zlib-pickle", nested_pickle_zlib),
    _pickle(
        "pickle-reduce-ex-posix-system",
        lambda c, n: dumps(ReduceEx(os.system, c.touch(n)), 5),
    ),
    _pickle("pickle-copyreg-reconstructor-popen", copyreg_popen),
    _pickle("pickle-builtins-getattr-chain", getattr_chain),
    _pickle("pickle-getattr-environ-setdefault", getattr_environ),
    _pickle("pickle-timeit-exec", timeit_exec),
    _pickle("pickle-torch-rebuild-tensor-payload", torch_rebuild_tensor),
    _pickle("torch-save-legacy-pickle", lambda c, n: torch_save(c, n, zipped=False), "pickles"),
    _pickle("pickle-then-valid-safetensors", _pickle_before_valid),
    # zip archives: torch.save's format, a bomb, and safetensors hidden in a zip
    _pickle("torch-save-zip-pt", lambda c, n: torch_save(c, n, zipped=True), "zip"),
    Case("zip-bomb-2gib-member", lambda c, n: cached_bomb(), PickleRejected),
    Case("zip-safetensors-inside", lambda c, n: safetensors_in_zip(), PickleRejected),
    Case("zip-empty-archive", lambda c, n: b"PK\x05\x06" + bytes(18), PickleRejected),
    # polyglots
    Case(
        "polyglot-pickle-framed-as-safetensors",
        lambda c, n: v_line_polyglot(c, n, valid_header=False),
        MalformedCheckpoint,
        "header_not_json",
        detonate="pickle",
    ),
    Case(
        "polyglot-valid-lenet-that-is-also-a-pickle",
        lambda c, n: v_line_polyglot(c, n, valid_header=True),
        None,
        verify_status=200,
        register_status=201,
        detonate="pickle",
    ),
    Case(
        "polyglot-pickle-appended-after-valid-data",
        _pickle_after_valid,
        MalformedCheckpoint,
        "trailing_data",
        detonate=None,
    ),
    # empty and truncated
    Case("zero-byte-file", lambda c, n: b"", MalformedCheckpoint, "empty", verify_status=400),
    _bad("truncated-in-length-prefix", "too_short", _truncated(lambda d: 5)),
    _bad("truncated-in-header", "header_truncated", _truncated(lambda d: 8 + _header_len(d) // 2)),
    _bad(
        "truncated-after-header", "offsets_out_of_range", _truncated(lambda d: 8 + _header_len(d))
    ),
    _bad("truncated-mid-data", "offsets_out_of_range", _truncated(lambda d: len(d) // 2)),
    _bad("truncated-last-byte", "offsets_out_of_range", _truncated(lambda d: len(d) - 1)),
    # header size
    Case(
        "header-ten-million-entries",
        lambda c, n: cached_many_entries(),
        MalformedCheckpoint,
        "header_too_large",
        verify_status=413,
        register_status=413,
    ),
    # json.loads builds 60 000 dicts before the entry count can be checked: ~17 MiB, still
    # bounded by the header cap (about 24 bytes of Python objects per header byte at worst).
    _bad(
        "header-60k-entries-under-cap",
        "too_many_tensors",
        many_tensors_under_cap,
        peak_bytes=32 * DEFAULT_MAX_HEADER_BYTES,
    ),
    _bad("header-length-2-pow-62", "header_too_large", lambda: struct.pack("<Q", 1 << 62) + b"{}"),
    _bad(
        "header-length-beyond-file",
        "header_truncated",
        lambda: struct.pack("<Q", 4096) + b'{"__metadata__":{}}',
    ),
    # data offsets
    _bad("offsets-overlapping", "data_overlap", lambda: edit_header(_overlap)),
    _bad("offsets-gap-between-tensors", "data_gap", lambda: edit_header(_gap) + bytes(4)),
    _bad(
        "offsets-out-of-range",
        "offsets_out_of_range",
        lambda: edit_header(_set("fc3.bias", data_offsets=[0, 1 << 40])),
    ),
    _bad("offsets-swapped-sizes", "size_mismatch", lambda: edit_header(_swap_offsets)),
    _bad(
        "offsets-floats",
        "bad_offsets",
        lambda: edit_header(_set("fc3.bias", data_offsets=[0.0, 8.0])),
    ),
    _bad(
        "offsets-negative",
        "bad_offsets",
        lambda: edit_header(_set("fc3.bias", data_offsets=[-8, 0])),
    ),
    _bad(
        "offsets-strings",
        "bad_offsets",
        lambda: edit_header(_set("fc3.bias", data_offsets=["0", "8"])),
    ),
    _bad(
        "offsets-reversed",
        "bad_offsets",
        lambda: edit_header(_set("fc3.bias", data_offsets=[8, 0])),
    ),
    _bad(
        "offsets-beyond-u64",
        "bad_offsets",
        lambda: edit_header(_set("fc3.bias", data_offsets=[0, 1 << 70])),
    ),
    # shapes and dtypes
    _bad(
        "shape-disagrees-with-byte-count",
        "size_mismatch",
        lambda: edit_header(_set("fc1.weight", shape=[120, 255])),
    ),
    _bad(
        "shape-of-the-padded-lenet",
        "wrong_shape",
        lambda: respec(lambda s: s.update({"fc1.weight": ("F32", (120, 400))})),
    ),
    _bad(
        "shape-negative-dimension", "bad_shape", lambda: edit_header(_set("fc3.bias", shape=[-2]))
    ),
    _bad("shape-float-dimension", "bad_shape", lambda: edit_header(_set("fc3.bias", shape=[2.0]))),
    _bad(
        "dtype-f16",
        "wrong_dtype",
        lambda: respec(lambda s: s.update({"fc1.weight": ("F16", (120, 256))})),
    ),
    _bad(
        "dtype-f64",
        "wrong_dtype",
        lambda: respec(lambda s: s.update({"conv1.weight": ("F64", (6, 1, 5, 5))})),
    ),
    _bad(
        "dtype-i64", "wrong_dtype", lambda: respec(lambda s: s.update({"fc3.bias": ("I64", (2,))}))
    ),
    _bad(
        "dtype-bool",
        "wrong_dtype",
        lambda: respec(lambda s: s.update({"fc3.weight": ("BOOL", (2, 84))})),
    ),
    _bad(
        "dtype-unknown-x9",
        "bad_dtype",
        lambda: respec(lambda s: s.update({"fc3.bias": ("X9", (2,))})),
    ),
    # tensor names
    _bad(
        "tensor-extra",
        "unexpected_tensor",
        lambda: respec(lambda s: s.update({"fc4.weight": ("F32", (2, 2))})),
    ),
    _bad("tensor-missing", "missing_tensor", lambda: respec(lambda s: s.pop("fc3.bias"))),
    _bad("tensor-renamed", "missing_tensor", lambda: respec(_rename)),
    _bad(
        "tensor-entry-extra-key",
        "bad_tensor_entry",
        lambda: edit_header(_set("fc3.bias", exec="__import__('os')")),
    ),
    # header syntax
    _bad("header-not-utf8", "header_not_utf8", lambda: raw_header(b'{"\xff\xfe":1}')),
    _bad("header-not-json", "header_not_json", lambda: raw_header(b"{not json at all}")),
    _bad("header-json-array", "header_not_object", lambda: raw_header(b"[1,2,3]")),
    _bad(
        "header-duplicate-key",
        "duplicate_key",
        lambda: header_text(
            lambda t: t[:-1] + ',"fc3.bias":' + json.dumps(split(valid())[0]["fc3.bias"]) + "}"
        ),
    ),
    _bad(
        "header-nan-literal",
        "header_not_json",
        lambda: header_text(lambda t: t.replace("[0,24]", "[NaN,24]", 1)),
    ),
    _bad(
        "header-infinity-literal",
        "header_not_json",
        lambda: header_text(lambda t: t[:-1] + ',"x":-Infinity}'),
    ),
    _bad(
        "header-nested-100k-levels",
        "header_not_json",
        lambda: raw_header(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ),
    _bad(
        "header-padding-nul-bytes", "header_not_json", lambda: header_text(lambda t: t + "\0" * 3)
    ),
    _bad("header-padding-letters", "header_not_json", lambda: header_text(lambda t: t + "x" * 5)),
    _bad(
        "header-huge-integer-literal",
        "header_not_json",
        lambda: header_text(lambda t: t.replace("[0,24]", "[0," + "9" * 5000 + "]", 1)),
    ),
    # metadata
    _bad("metadata-missing", "missing_metadata", lambda: frame(*layout(lenet_specs(), None))),
    _meta(
        "metadata-not-strings",
        None,
        lambda: edit_header(lambda h: h["__metadata__"].update(num_classes=2)),
    ),
    _meta(
        "metadata-number-1e400",
        None,
        lambda: header_text(lambda t: t.replace('"num_classes":"2"', '"num_classes":1e400')),
    ),
    _meta(
        "metadata-architecture-resnet",
        "architecture",
        lambda: with_metadata(architecture="resnet50"),
    ),
    _meta(
        "metadata-architecture-version-2",
        "architecture_version",
        lambda: with_metadata(architecture_version="2"),
    ),
    _meta("metadata-format-numpy", "format", lambda: with_metadata(format="np")),
    _meta("metadata-unknown-key", "loader", lambda: with_metadata(loader="pickle")),
    _meta("metadata-in-channels-0", "in_channels", lambda: with_metadata(in_channels="0")),
    _meta("metadata-in-channels-2", "in_channels", lambda: with_metadata(in_channels="2")),
    _meta(
        "metadata-in-channels-huge",
        "in_channels",
        lambda: with_metadata(in_channels="1" + "0" * 5000),
    ),
    _meta("metadata-num-classes-0", "num_classes", lambda: with_metadata(num_classes="0")),
    _meta(
        "metadata-num-classes-1",
        "num_classes",
        lambda: with_metadata(num_classes="1", class_names='["only"]'),
    ),
    _meta(
        "metadata-num-classes-100000", "num_classes", lambda: with_metadata(num_classes="100000")
    ),
    _meta("metadata-input-size-15", "input_size", lambda: with_metadata(input_size="15")),
    _meta("metadata-input-size-padded-28", "input_size", lambda: with_metadata(input_size="028")),
    _meta("metadata-input-size-100000", "input_size", lambda: with_metadata(input_size="100000")),
    _meta(
        "metadata-class-names-not-a-list",
        "class_names",
        lambda: with_metadata(class_names='{"0":"benign"}'),
    ),
    _meta(
        "metadata-class-names-wrong-length",
        "class_names",
        lambda: with_metadata(class_names='["a","b","c"]'),
    ),
    _meta(
        "metadata-class-names-control-chars",
        "class_names",
        lambda: with_metadata(class_names='["benign","mal\\u001b[2Jignant"]'),
    ),
    _meta(
        "metadata-class-names-nested-100k",
        "class_names",
        lambda: with_metadata(class_names="[" * 100_000 + "]" * 100_000),
    ),
    _meta("metadata-std-zero", "normalization", lambda: with_metadata(normalization=_std([0.0]))),
    _meta(
        "metadata-std-negative", "normalization", lambda: with_metadata(normalization=_std([-0.25]))
    ),
    _meta("metadata-std-nan", "normalization", lambda: with_metadata(normalization=_std("[NaN]"))),
    _meta(
        "metadata-std-1e400", "normalization", lambda: with_metadata(normalization=_std("[1e400]"))
    ),
    _meta(
        "metadata-mean-5000-digits",
        "normalization",
        lambda: with_metadata(normalization='{"mean":[' + "9" * 5000 + '],"std":[0.25]}'),
    ),
    _meta(
        "metadata-std-per-channel-mismatch",
        "normalization",
        lambda: with_metadata(normalization=_std([0.25, 0.25])),
    ),
    _meta(
        "metadata-std-1e-300", "normalization", lambda: with_metadata(normalization=_std([1e-300]))
    ),
    _meta(
        "metadata-mean-1e300",
        "normalization",
        lambda: with_metadata(normalization='{"mean":[1e300],"std":[0.25]}'),
    ),
    # labels that read as something else
    _meta(
        "metadata-class-names-right-to-left-override",
        "class_names",
        lambda: with_metadata(class_names='["benign","\\u202essenmoN"]'),
    ),
    _meta(
        "metadata-class-names-zero-width-joiner",
        "class_names",
        lambda: with_metadata(class_names='["benign","mal\\u200dignant"]'),
    ),
    _meta(
        "metadata-class-names-alike-after-nfkc",
        "class_names",
        lambda: with_metadata(class_names='["\\ufb01brosis","fibrosis"]'),
    ),
    _meta(
        "metadata-class-names-trailing-space",
        "class_names",
        lambda: with_metadata(class_names='["benign","malignant "]'),
    ),
    # weights that turn every prediction into NaN
    _bad("weights-nan", "non_finite_weights", _poisoned("fc3.bias", 1, math.nan), key="fc3.bias"),
    _bad(
        "weights-infinity",
        "non_finite_weights",
        _poisoned("conv1.weight", 0, math.inf),
        key="conv1.weight",
    ),
    _bad(
        "weights-negative-infinity",
        "non_finite_weights",
        _poisoned("fc1.weight", 7, -math.inf),
        key="fc1.weight",
    ),
    # trailing bytes
    _bad("trailing-bytes", "trailing_data", lambda: valid() + b"\0" * 8),
]

BY_ID: dict[str, Case] = {case.id: case for case in CASES}
assert len(BY_ID) == len(CASES), "case ids must be unique"


@cache
def cached_bomb() -> bytes:
    return zip_bomb()


@cache
def cached_many_entries() -> bytearray:
    return many_entries(10_000_000)


# --- detonation (only ever in a child process) ---------------------------------------------------


def detonate(data: bytes, how: str) -> None:
    """Load ``data`` the careless way: what the registry must never do. Run in a child process."""
    if how == "pickle":
        pickle.loads(data)
    elif how == "pickles":  # torch's legacy format: several pickles in a row
        stream = io.BytesIO(data)
        while stream.tell() < len(data):
            pickle.load(stream)
    elif how == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                if name.endswith(".pkl"):
                    pickle.loads(archive.read(name))
    else:
        raise ValueError(how)


if __name__ == "__main__":  # the child: python corpus.py DIR (files CASE.bin and CASE.how)
    sys.modules["torch"] = None  # type: ignore[assignment]  # payloads must not need torch
    for path in sorted(Path(sys.argv[1]).glob("*.bin")):
        try:
            detonate(path.read_bytes(), path.with_suffix(".how").read_text())
        except Exception as exc:  # a payload may fail after it fired; the canary tells
            print(f"{path.stem}: {type(exc).__name__}: {exc}", file=sys.stderr)
    for name in sorted(os.environ):  # variables die with this process: report them
        print(name)
