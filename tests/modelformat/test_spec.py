"""The torch-free description of LeNet-5 and its checkpoint header."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from modelformat.header import inspect_checkpoint
from modelformat.spec import (
    METADATA_KEYS,
    ModelSpec,
    expected_tensor_specs,
    flattened_size,
    parse_metadata,
)
from training.checkpoint import checkpoint_bytes
from training.errors import MalformedCheckpoint, SpecError
from training.model import LeNet5, build_model

ROOT = Path(__file__).resolve().parents[2]


def spec(**changes: Any) -> ModelSpec:
    values: dict[str, Any] = {
        "in_channels": 1,
        "input_size": 28,
        "num_classes": 3,
        "class_names": ("a", "b", "c"),
        "mean": (0.25,),
        "std": (0.5,),
        "dataset": "toy",
    }
    values.update(changes)
    return ModelSpec(**values)


def test_flattened_size_is_derived_from_the_input_not_the_padded_recipe() -> None:
    assert flattened_size(28) == 16 * 4 * 4
    assert flattened_size(32) == 16 * 5 * 5
    assert flattened_size(16) == 16 * 1 * 1
    with pytest.raises(SpecError) as info:
        flattened_size(15)
    assert info.value.key == "input_size"


@pytest.mark.parametrize(
    ("channels", "size", "classes"), [(1, 28, 2), (3, 28, 9), (1, 32, 10), (3, 64, 5), (1, 16, 4)]
)
def test_expected_tensor_specs_match_the_real_state_dict_exactly(
    channels: int, size: int, classes: int
) -> None:
    state = LeNet5(channels, classes, size).state_dict()
    specs = expected_tensor_specs(channels, size, classes)
    assert list(specs) == list(state)
    for name, tensor in state.items():
        assert specs[name] == ("F32", tuple(tensor.shape)), name
        assert tensor.dtype == torch.float32


@pytest.mark.parametrize(
    ("args", "key"),
    [((2, 28, 10), "in_channels"), ((1, 28, 1), "num_classes"), ((1, 300, 10), "input_size")],
)
def test_expected_tensor_specs_refuses_impossible_networks(
    args: tuple[int, int, int], key: str
) -> None:
    with pytest.raises(SpecError) as info:
        expected_tensor_specs(*args)
    assert info.value.key == key


def test_metadata_round_trips_and_keeps_its_key_order() -> None:
    original = spec(
        in_channels=3, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), class_names=("é", "b", "c")
    )
    meta = original.to_metadata()
    assert tuple(meta) == METADATA_KEYS
    assert all(isinstance(v, str) for v in meta.values())
    assert parse_metadata(meta) == original
    assert json.loads(meta["normalization"]) == {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("format", "np"),
        ("architecture", "resnet18"),
        ("architecture_version", "2"),
        ("in_channels", "2"),
        ("in_channels", "01"),
        ("input_size", "+28"),
        ("input_size", "28.0"),
        ("input_size", " 28"),
        ("num_classes", "-3"),
        ("num_classes", "1"),
        ("class_names", '["a","a","b"]'),
        ("class_names", '["a","b"]'),
        ("class_names", '{"a":1}'),
        ("class_names", '["a","b",3]'),
        ("class_names", '["a","b","c\\u0000"]'),
        ("class_names", "not json"),
        ("normalization", '{"mean":[0.5],"std":[0]}'),
        ("normalization", '{"mean":[0.5],"std":[NaN]}'),
        ("normalization", '{"mean":[0.5,0.5],"std":[0.5,0.5]}'),
        ("normalization", '{"mean":[0.5]}'),
        ("normalization", '{"mean":[0.5],"std":[0.5],"std":[0.7]}'),
        ("normalization", '{"mean":[true],"std":[0.5]}'),
        ("dataset", ""),
        ("dataset", "x" * 201),
    ],
)
def test_parse_metadata_names_the_bad_key(key: str, value: str) -> None:
    meta = spec().to_metadata()
    meta[key] = value
    with pytest.raises(SpecError) as info:
        parse_metadata(meta)
    assert info.value.key == key
    assert key in str(info.value)


def test_a_class_count_that_disagrees_with_the_names_is_refused() -> None:
    meta = spec().to_metadata()
    meta["num_classes"] = "4"
    with pytest.raises(SpecError, match="exactly 4 names") as info:
        parse_metadata(meta)
    assert info.value.key == "class_names"


def test_parse_metadata_refuses_missing_unknown_and_non_string_values() -> None:
    meta = spec().to_metadata()
    del meta["dataset"]
    with pytest.raises(SpecError, match="missing") as info:
        parse_metadata(meta)
    assert info.value.key == "dataset"

    meta = {**spec().to_metadata(), "extra": "1"}
    with pytest.raises(SpecError, match="unknown key") as info:
        parse_metadata(meta)
    assert info.value.key == "extra"

    meta = dict(spec().to_metadata())
    meta["num_classes"] = 3  # type: ignore[assignment]
    with pytest.raises(SpecError) as info:
        parse_metadata(meta)
    assert info.value.key == "num_classes"


def test_deeply_nested_metadata_json_is_refused_without_parsing_it() -> None:
    meta = spec().to_metadata()
    meta["class_names"] = "[" * 100_000 + "]" * 100_000
    with pytest.raises(SpecError, match="nested more than 8 levels") as info:
        parse_metadata(meta)
    assert info.value.key == "class_names"


def _checkpoint(s: ModelSpec | None = None) -> bytes:
    s = s or spec()
    torch.manual_seed(0)
    return checkpoint_bytes(build_model(s), s)


def _reassemble(header: dict[str, Any], body: bytes) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + body


def _tampered(edit: Any) -> bytes:
    data = _checkpoint()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    edit(header)
    return _reassemble(header, data[8 + n :])


def _refused(data: bytes, problem: str) -> MalformedCheckpoint:
    with pytest.raises(MalformedCheckpoint) as info:
        inspect_checkpoint(data)
    assert info.value.problem == problem, info.value.reason
    return info.value


def test_the_header_check_accepts_our_file_and_returns_its_spec() -> None:
    s = spec(in_channels=3, mean=(0.1, 0.2, 0.3), std=(0.3, 0.3, 0.3))
    assert inspect_checkpoint(_checkpoint(s)).spec == s


@pytest.mark.parametrize(
    ("edit", "problem", "named"),
    [
        (lambda h: h["fc1.weight"].update(shape=[120, 400]), "size_mismatch", "fc1.weight"),
        (lambda h: h["conv1.bias"].update(dtype="F16"), "size_mismatch", "conv1.bias"),
        (lambda h: h.pop("fc3.bias"), "data_gap", "fc3.weight"),
        (
            lambda h: h.update(extra={"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}),
            "data_overlap",
            "extra",
        ),
        (lambda h: h["fc2.bias"].update(data_offsets=[0, 336]), "data_overlap", "fc2.bias"),
        (lambda h: h["conv1.bias"].update(data_offsets=[0.0, 24.0]), "bad_offsets", "conv1.bias"),
        (lambda h: h.pop("__metadata__"), "missing_metadata", "__metadata__"),
        (
            lambda h: h["__metadata__"].update(num_classes="4", class_names='["a","b","c","d"]'),
            "wrong_shape",
            "fc3.weight",
        ),
    ],
)
def test_the_header_check_refuses_a_header_that_does_not_fit_its_spec(
    edit: Any, problem: str, named: str
) -> None:
    assert named in _refused(_tampered(edit), problem).reason


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b"\x00" * 7, "too_short"),
        (struct.pack("<Q", 1 << 40) + b"{}", "header_too_large"),
        (struct.pack("<Q", 2) + b"[]", "header_not_object"),
        (struct.pack("<Q", 4) + b'{"a"', "header_not_json"),
        (struct.pack("<Q", 2) + b"\xff\xfe", "header_not_object"),
        (struct.pack("<Q", 4) + b'{"\xff"', "header_not_utf8"),
        (struct.pack("<Q", 19) + b'{"a":1,"a":2}      ', "duplicate_key"),
    ],
)
def test_the_header_check_refuses_what_is_not_a_header(data: bytes, problem: str) -> None:
    _refused(data, problem)


def test_a_deeply_nested_header_is_refused_before_json_parses_it() -> None:
    text = b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    exc = _refused(struct.pack("<Q", len(text)) + text, "header_not_json")
    assert "nested more than 8 levels" in exc.reason


def test_truncated_or_padded_tensor_data_is_refused() -> None:
    data = _checkpoint()
    assert "fc3.weight" in _refused(data[:-4], "offsets_out_of_range").reason
    assert "4 bytes nobody accounts for" in _refused(data + b"\x00" * 4, "trailing_data").reason


def test_header_modules_import_neither_torch_nor_registry() -> None:
    code = (
        "import sys\n"
        "import modelformat.spec, modelformat.header, modelformat.strictjson, training.digests, "
        "training.errors, training.card, training.evaluate\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'registry'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_no_training_module_imports_registry() -> None:
    code = (
        "import sys, pkgutil, importlib, training\n"
        "for m in pkgutil.iter_modules(training.__path__):\n"
        "    if m.name != '__main__':\n"
        "        importlib.import_module('training.' + m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'registry')\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
