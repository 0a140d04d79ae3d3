from __future__ import annotations

import io
import json
import pickle
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lenetkit import lenet_metadata, lenet_shapes

from modelformat.header import (
    MAX_TENSORS,
    CheckedCheckpoint,
    MalformedCheckpoint,
    inspect_checkpoint,
)
from registry.core.digest import digest_bytes
from registry.errors import InvalidCheckpoint, PickleRejected
from registry.gate import CheckedDigests

# --- building real files -------------------------------------------------------------------


def lenet_arrays(c: int = 1, size: int = 28, k: int = 10, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        name: rng.standard_normal(shape).astype(np.float32)
        for name, shape in lenet_shapes(c, size, k).items()
    }


def valid_checkpoint(c: int = 1, size: int = 28, k: int = 10) -> bytes:
    return safetensors.numpy.save(lenet_arrays(c, size, k), metadata=lenet_metadata(c, size, k))


VALID = valid_checkpoint()


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def assemble(header: dict[str, Any] | bytes, body: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def with_header(mutate: Any, data: bytes = VALID) -> bytes:
    header, body = split(data)
    mutate(header)
    return assemble(header, body)


def refused(data: bytes, problem: str, *mentions: str) -> MalformedCheckpoint:
    with pytest.raises(MalformedCheckpoint) as info:
        inspect_checkpoint(data)
    exc = info.value
    assert exc.problem == problem, exc.reason
    assert exc.details["problem"] == problem
    for text in mentions:
        assert text in exc.reason, (text, exc.reason)
    return exc


# --- accepted ------------------------------------------------------------------------------


@pytest.mark.parametrize(("c", "size", "k"), [(1, 28, 10), (3, 28, 9), (3, 32, 2), (1, 64, 7)])
def test_a_real_lenet_checkpoint_passes_and_agrees_with_the_safetensors_loader(
    c: int, size: int, k: int
) -> None:
    data = valid_checkpoint(c, size, k)
    checked = inspect_checkpoint(data)
    assert isinstance(checked, CheckedCheckpoint)
    assert dict(checked.metadata) == lenet_metadata(c, size, k)
    assert checked.spec.in_channels == c
    assert checked.spec.input_size == size
    assert checked.spec.num_classes == k
    loaded = safetensors.numpy.load(data)
    assert set(checked.tensors) == set(loaded) == set(lenet_shapes(c, size, k))
    for name, array in loaded.items():
        entry = checked.tensors[name]
        assert entry.dtype == "F32" and array.dtype == np.float32
        assert entry.shape == array.shape
        start, end = entry.data_offsets
        assert data[checked.data_start + start : checked.data_start + end] == array.tobytes()


def test_the_result_cannot_be_modified() -> None:
    checked = inspect_checkpoint(VALID)
    with pytest.raises(TypeError):
        checked.metadata["architecture"] = "other"  # type: ignore[index]
    with pytest.raises(TypeError):
        checked.tensors["x"] = checked.tensors["fc3.bias"]  # type: ignore[index]


def test_header_padding_with_spaces_is_accepted() -> None:
    header, body = split(VALID)
    raw = json.dumps(header).encode() + b"       "
    assert inspect_checkpoint(assemble(raw, body)).tensors.keys() == split(VALID)[0].keys() - {
        "__metadata__"
    }


# --- pickles and zips ----------------------------------------------------------------------


class Payload:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_pickle_with_a_code_execution_payload_is_rejected_and_never_run(
    tmp_path: Path, protocol: int
) -> None:
    canary = tmp_path / "canary"
    data = pickle.dumps(Payload(canary), protocol=protocol)
    # The payload is live: loading a copy of it really creates a file.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(control), protocol=protocol)).close()
    assert control.exists()

    with pytest.raises(PickleRejected) as info:
        inspect_checkpoint(data)
    assert "pickle" in info.value.kind
    assert str(protocol) in info.value.kind
    assert info.value.code == "pickle_rejected"
    assert not canary.exists()


@pytest.mark.parametrize("obj", [None, 7, "x", [1, 2], {"state_dict": [0.5] * 100}])
def test_plain_pickles_of_any_protocol_are_rejected(obj: object) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(PickleRejected):
            inspect_checkpoint(pickle.dumps(obj, protocol=protocol))


def test_a_torch_save_zip_is_rejected_as_a_zip() -> None:
    torch = pytest.importorskip("torch")
    buffer = io.BytesIO()
    torch.save({name: torch.from_numpy(a) for name, a in lenet_arrays().items()}, buffer)
    data = buffer.getvalue()
    assert data[:4] == b"PK\x03\x04"
    with pytest.raises(PickleRejected) as info:
        inspect_checkpoint(data)
    assert "zip" in info.value.kind and "torch.save" in info.value.kind


def test_a_legacy_torch_save_file_is_rejected_as_a_pickle() -> None:
    torch = pytest.importorskip("torch")
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, buffer, _use_new_zipfile_serialization=False)
    with pytest.raises(PickleRejected) as info:
        inspect_checkpoint(buffer.getvalue())
    assert "pickle" in info.value.kind


def test_a_header_length_whose_first_bytes_look_like_a_pickle_marker_is_still_safetensors() -> None:
    # A length of 0x0280, 0x0380... starts with 0x80 0x02..0x05, like a pickle's PROTO opcode.
    # Padded (with spaces, as the format allows) to such a length, the file must still pass.
    header, body = split(VALID)
    raw = json.dumps(header).encode()
    length = min(n for n in (0x0280, 0x0380, 0x0480, 0x0580) if n >= len(raw))
    data = assemble(raw + b" " * (length - len(raw)), body)
    assert data[0] == 0x80 and 2 <= data[1] <= 5
    assert inspect_checkpoint(data).tensors.keys() == set(lenet_shapes())
    assert set(safetensors.numpy.load(data)) == set(lenet_shapes())


# --- framing -------------------------------------------------------------------------------


def test_an_empty_file_is_refused() -> None:
    refused(b"", "empty", "0 bytes")


@pytest.mark.parametrize("size", [1, 5, 7])
def test_a_file_shorter_than_the_length_prefix_is_refused(size: int) -> None:
    refused(b"\x01" * size, "too_short", f"{size} bytes")


def test_a_header_length_over_the_cap_is_refused_without_reading_it() -> None:
    n = (1 << 20) + 1
    refused(struct.pack("<Q", n) + b"{" + b" " * n, "header_too_large", str(n), str(1 << 20))


def test_a_header_declaring_ten_million_entries_is_refused_by_its_length() -> None:
    entry = b'"t%d":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
    declared = 10_000_000 * len(entry)
    data = struct.pack("<Q", declared) + b"{" + entry * 1000
    refused(data, "header_too_large", str(declared))


def test_a_header_full_of_tensor_entries_is_refused_by_count() -> None:
    entries = b",".join(
        b'"t%d":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}' % i for i in range(15_000)
    )
    raw = b"{" + entries + b"}"
    assert len(raw) < 1 << 20
    refused(assemble(raw, b"\0" * 4), "too_many_tensors", "15000", str(MAX_TENSORS))


def test_a_header_length_past_the_end_of_the_file_is_refused() -> None:
    refused(struct.pack("<Q", 100) + b"{}", "header_truncated", "100", "only 2")


def test_a_custom_header_cap_is_honoured() -> None:
    n = struct.unpack("<Q", VALID[:8])[0]
    with pytest.raises(MalformedCheckpoint) as info:
        inspect_checkpoint(VALID, max_header_bytes=n - 1)
    assert info.value.problem == "header_too_large"
    assert inspect_checkpoint(VALID, max_header_bytes=n).spec.num_classes == 10


@pytest.mark.parametrize("start", [b" {", b"[", b"\x00", b"\xef\xbb\xbf{"])
def test_a_header_that_does_not_start_with_a_brace_is_refused(start: bytes) -> None:
    header, body = split(VALID)
    refused(assemble(start + json.dumps(header).encode()[1:], body), "header_not_object", "'{'")


def test_a_header_that_is_not_utf8_is_refused() -> None:
    header, body = split(VALID)
    raw = json.dumps(header).encode().replace(b'"pathmnist"', b'"path\xffmnist"')
    refused(assemble(raw, body), "header_not_utf8", "UTF-8")


@pytest.mark.parametrize("raw", [b'{"a": ', b"{}}", b'{"a": NaN}', b'{"a": Infinity}', b"{'a': 1}"])
def test_a_header_that_is_not_json_is_refused(raw: bytes) -> None:
    refused(assemble(raw, b""), "header_not_json")


@pytest.fixture
def high_recursion_limit() -> Any:
    """Like any process that imported web3 (py_ecc and py-evm raise the limit to 100 000)."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, 100_000))
    yield
    sys.setrecursionlimit(before)


@pytest.mark.usefixtures("high_recursion_limit")
@pytest.mark.parametrize("depth", [9, 1000, 500_000])
def test_a_deeply_nested_header_is_refused_without_recursing(depth: int) -> None:
    # Without the depth check, json.loads overflows the C stack here and the process dies.
    raw = b'{"a":' + b"[" * depth + b"]" * depth + b"}"
    refused(assemble(raw, b""), "header_not_json", "nested more than 8 levels")


@pytest.mark.usefixtures("high_recursion_limit")
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("class_names", "[" * 500_000 + "]" * 500_000),
        ("normalization", '{"mean": ' + "[" * 300_000 + "]" * 300_000 + ', "std": [0.5]}'),
        ("class_names", " " + "[" * 100_000),
    ],
)
def test_deeply_nested_json_inside_metadata_is_refused_without_recursing(
    key: str, value: str
) -> None:
    def mutate(h: dict[str, Any]) -> None:
        h["__metadata__"][key] = value

    exc = refused(with_header(mutate), "bad_metadata", key, "nested more than 8 levels")
    assert exc.details["key"] == key


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    names = [f"[[[[[[[[[[{i}" for i in range(10)]
    meta = {**lenet_metadata(), "class_names": json.dumps(names), "dataset": "]]]{{{[[[x"}
    data = safetensors.numpy.save(lenet_arrays(), metadata=meta)
    assert inspect_checkpoint(data).spec.class_names == tuple(names)


def test_a_duplicated_tensor_name_is_refused() -> None:
    header, body = split(VALID)
    raw = json.dumps(header).encode()
    bias = json.dumps({"fc3.bias": header["fc3.bias"]}).encode()[1:-1]
    refused(assemble(raw[:-1] + b"," + bias + b"}", body), "duplicate_key", "fc3.bias")


def test_a_duplicated_metadata_key_is_refused() -> None:
    header, body = split(VALID)
    raw = json.dumps(header).encode().replace(b'"format": "pt"', b'"format": "pt", "format": "x"')
    refused(assemble(raw, body), "duplicate_key", "format")


# --- metadata ------------------------------------------------------------------------------


def test_a_checkpoint_without_metadata_is_refused() -> None:
    refused(with_header(lambda h: h.pop("__metadata__")), "missing_metadata", "__metadata__")


@pytest.mark.parametrize("meta", [[], "lenet5", {"in_channels": 1}, {"a": {"b": "c"}}])
def test_metadata_that_is_not_strings_to_strings_is_refused(meta: object) -> None:
    refused(with_header(lambda h: h.update(__metadata__=meta)), "bad_metadata", "__metadata__")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("architecture", "resnet50"),
        ("architecture_version", "99"),
        ("in_channels", "one"),
        ("num_classes", "0"),
        ("class_names", "not json"),
        ("normalization", '{"mean": [0.5]}'),
        ("format", "pickle"),
    ],
)
def test_metadata_the_architecture_refuses_is_refused_naming_the_key(key: str, value: str) -> None:
    def mutate(h: dict[str, Any]) -> None:
        h["__metadata__"][key] = value

    exc = refused(with_header(mutate), "bad_metadata", key)
    assert exc.details.get("key") == key


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("normalization", '{"mean": [' + "9" * 400 + '], "std": [0.5]}'),
        ("normalization", '{"mean": [1e400], "std": [0.5]}'),
        ("class_names", json.dumps(["x" * 10_000] * 10)),
    ],
)
def test_hostile_json_inside_metadata_is_refused_as_a_checkpoint_problem(
    key: str, value: str
) -> None:
    def mutate(h: dict[str, Any]) -> None:
        h["__metadata__"][key] = value

    refused(with_header(mutate), "bad_metadata")


def test_missing_metadata_key_is_refused() -> None:
    exc = refused(with_header(lambda h: h["__metadata__"].pop("num_classes")), "bad_metadata")
    assert "num_classes" in exc.reason


# --- tensor set ----------------------------------------------------------------------------


def test_a_missing_tensor_is_refused() -> None:
    arrays = lenet_arrays()
    del arrays["fc3.bias"]
    refused(safetensors.numpy.save(arrays, metadata=lenet_metadata()), "missing_tensor", "fc3.bias")


def test_an_extra_tensor_is_refused() -> None:
    arrays = lenet_arrays()
    arrays["backdoor.weight"] = np.zeros((4,), np.float32)
    data = safetensors.numpy.save(arrays, metadata=lenet_metadata())
    refused(data, "unexpected_tensor", "backdoor.weight")


def test_a_tensor_of_the_wrong_dtype_is_refused() -> None:
    arrays = lenet_arrays()
    arrays["fc2.bias"] = arrays["fc2.bias"].astype(np.float64)
    data = safetensors.numpy.save(arrays, metadata=lenet_metadata())
    refused(data, "wrong_dtype", "fc2.bias", "F64", "F32")


def test_a_tensor_of_the_wrong_shape_is_refused() -> None:
    data = safetensors.numpy.save(lenet_arrays(k=11), metadata=lenet_metadata(k=10))
    refused(data, "wrong_shape", "fc3", "11", "num_classes=10")


def test_weights_for_another_input_size_are_refused() -> None:
    data = safetensors.numpy.save(lenet_arrays(size=32), metadata=lenet_metadata(size=28))
    refused(data, "wrong_shape", "fc1.weight", "400", "256")


def test_more_tensors_than_the_cap_are_refused() -> None:
    arrays = {f"t{i}": np.zeros((1,), np.float32) for i in range(MAX_TENSORS + 1)}
    data = safetensors.numpy.save(arrays, metadata=lenet_metadata())
    refused(data, "too_many_tensors", str(MAX_TENSORS + 1))


# --- tensor entries ------------------------------------------------------------------------


def set_entry(name: str, **changes: Any) -> bytes:
    def mutate(h: dict[str, Any]) -> None:
        h[name].update(changes)

    return with_header(mutate)


def test_a_tensor_entry_that_is_not_an_object_is_refused() -> None:
    refused(with_header(lambda h: h.update({"fc3.bias": [0, 40]})), "bad_tensor_entry", "fc3.bias")


def test_a_tensor_entry_with_an_extra_key_is_refused() -> None:
    refused(set_entry("fc3.bias", offset=0), "bad_tensor_entry", "fc3.bias", "offset")


def test_a_tensor_entry_without_offsets_is_refused() -> None:
    refused(
        with_header(lambda h: h["conv1.bias"].pop("data_offsets")),
        "bad_tensor_entry",
        "conv1.bias",
        "missing data_offsets",
    )


def test_an_unknown_dtype_is_refused() -> None:
    refused(set_entry("fc3.bias", dtype="F128"), "bad_dtype", "F128")


@pytest.mark.parametrize("shape", [[10.0], [-10], [True], "10", [[10]], [1] * 9, [1 << 50]])
def test_a_malformed_shape_is_refused(shape: object) -> None:
    refused(set_entry("fc3.bias", shape=shape), "bad_shape", "fc3.bias")


@pytest.mark.parametrize("offsets", [[0], [0, 1, 2], [0.0, 40.0], ["0", "40"], [-4, 36], [40, 0]])
def test_malformed_data_offsets_are_refused(offsets: object) -> None:
    refused(set_entry("fc3.bias", data_offsets=offsets), "bad_offsets", "fc3.bias")


# --- layout --------------------------------------------------------------------------------


def entries(data: bytes = VALID) -> list[tuple[str, list[int]]]:
    header, _ = split(data)
    header.pop("__metadata__")
    return sorted(((n, e["data_offsets"]) for n, e in header.items()), key=lambda x: x[1])


def test_offsets_that_disagree_with_the_shape_are_refused() -> None:
    name, (start, end) = entries()[0]
    refused(set_entry(name, data_offsets=[start, end - 4]), "size_mismatch", name, str(end - start))


def test_offsets_past_the_end_of_the_data_section_are_refused() -> None:
    name, (start, end) = entries()[-1]
    data = set_entry(name, data_offsets=[start + 4, end + 4])
    refused(data, "offsets_out_of_range", name, str(end + 4))


def test_a_gap_between_tensors_is_refused() -> None:
    # Move the last tensor 4 bytes later and add 4 bytes so the sizes still add up.
    name, (start, end) = entries()[-1]
    header, body = split(set_entry(name, data_offsets=[start + 4, end + 4]))
    refused(assemble(header, body + b"\0" * 4), "data_gap", name, "gap of 4 bytes")


def test_a_data_section_not_starting_at_zero_is_refused() -> None:
    header, body = split(VALID)
    for e in header.values():
        if "data_offsets" in e:
            e["data_offsets"] = [o + 4 for o in e["data_offsets"]]
    refused(assemble(header, b"\0" * 4 + body), "data_gap", "start of the data section")


def test_overlapping_tensors_are_refused() -> None:
    (first, _), (second, (s1, e1)) = entries()[:2]
    data = set_entry(second, data_offsets=[s1 - 4, e1 - 4])
    refused(data, "data_overlap", second, first, "overlap of 4 bytes")


def test_trailing_bytes_after_the_last_tensor_are_refused() -> None:
    refused(VALID + b"\0", "trailing_data", "1 bytes")


def test_a_truncated_file_is_refused() -> None:
    refused(VALID[:-1], "offsets_out_of_range")


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_raise_only_invalid_checkpoint(data: bytes) -> None:
    with pytest.raises(InvalidCheckpoint):
        inspect_checkpoint(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=8, max_size=8), st.binary(max_size=2048))
def test_bytes_with_a_plausible_length_prefix_raise_only_invalid_checkpoint(
    prefix: bytes, rest: bytes
) -> None:
    n = struct.unpack("<Q", prefix)[0] % (len(rest) + 1)
    with pytest.raises(InvalidCheckpoint):
        inspect_checkpoint(struct.pack("<Q", n) + b"{" + rest)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_mutated_checkpoints_are_refused_or_load_identically(edits: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for position, value in edits:
        data[position] = value
    try:
        checked = inspect_checkpoint(bytes(data))
    except InvalidCheckpoint:
        return
    # Whatever passes must be something the real loader reads exactly as described.
    loaded = safetensors.numpy.load(bytes(data))
    assert set(loaded) == set(checked.tensors)
    for name, array in loaded.items():
        start, end = checked.tensors[name].data_offsets
        assert array.shape == checked.tensors[name].shape
        assert bytes(data[checked.data_start + start : checked.data_start + end]) == array.tobytes()


# --- remembered by digest ------------------------------------------------------------------


def test_checked_digests_parse_a_passing_file_once_and_a_refused_one_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import registry.gate as gate

    parsed: list[int] = []
    real = gate.inspect_checkpoint
    monkeypatch.setattr(gate, "inspect_checkpoint", lambda data: parsed.append(1) or real(data))
    checks = CheckedDigests()
    good, bad = VALID, with_header(lambda h: h.pop("conv1.bias"))

    assert checks.passed(digest_bytes(good)) is None
    first = checks.inspect(good, digest_bytes(good))
    assert checks.inspect(good, digest_bytes(good)) is first
    assert checks.passed(digest_bytes(good)) is first
    for _ in range(2):
        with pytest.raises(MalformedCheckpoint):
            checks.inspect(bad, digest_bytes(bad))
    assert checks.passed(digest_bytes(bad)) is None
    assert len(parsed) == 3  # good once, bad twice


def test_checked_digests_keep_at_most_their_bound_least_recently_used_first_out() -> None:
    checks = CheckedDigests(max_entries=2)
    files = [valid_checkpoint(k=k) for k in (3, 4, 5)]
    digests = [digest_bytes(f) for f in files]
    checks.inspect(files[0], digests[0])
    checks.inspect(files[1], digests[1])
    assert checks.passed(digests[0]) is not None  # now the most recently used
    checks.inspect(files[2], digests[2])
    assert checks.passed(digests[1]) is None
    assert checks.passed(digests[0]) is not None and checks.passed(digests[2]) is not None
