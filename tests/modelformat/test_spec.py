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

from modelformat.spec import (
    METADATA_KEYS,
    ModelSpec,
    check_checkpoint_header,
    expected_tensor_specs,
    flattened_size,
    parse_metadata,
    read_safetensors_header,
)
from training.checkpoint import checkpoint_bytes
from training.errors import CheckpointError, SpecError
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
    with pytest.raises(SpecError, match="nested deeper") as info:
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
    header, start = read_safetensors_header(data)
    edit(header)
    return _reassemble(header, data[start:])


def test_check_checkpoint_header_accepts_our_file_and_returns_its_spec() -> None:
    s = spec(in_channels=3, mean=(0.1, 0.2, 0.3), std=(0.3, 0.3, 0.3))
    assert check_checkpoint_header(_checkpoint(s)) == s


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda h: h["fc1.weight"].update(shape=[120, 400]), "fc1.weight"),
        (lambda h: h["conv1.bias"].update(dtype="F16"), "conv1.bias"),
        (lambda h: h.pop("fc3.bias"), "tensors"),
        (
            lambda h: h.update(extra={"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}),
            "tensors",
        ),
        (lambda h: h["fc2.bias"].update(data_offsets=[0, 336]), "fc2.bias"),
        (lambda h: h["conv1.bias"].update(data_offsets=[0.0, 24.0]), "conv1.bias"),
        (lambda h: h.pop("__metadata__"), "__metadata__"),
        (
            lambda h: h["__metadata__"].update(num_classes="4", class_names='["a","b","c","d"]'),
            "fc3.weight",
        ),
    ],
)
def test_check_checkpoint_header_refuses_a_header_that_does_not_fit(edit: Any, key: str) -> None:
    with pytest.raises(SpecError) as info:
        check_checkpoint_header(_tampered(edit))
    assert info.value.key == key


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 7,
        struct.pack("<Q", 1 << 40) + b"{}",
        struct.pack("<Q", 2) + b"[]",
        struct.pack("<Q", 4) + b'{"a"',
        struct.pack("<Q", 2) + b"\xff\xfe",
        struct.pack("<Q", 19) + b'{"a":1,"a":2}      ',
    ],
)
def test_read_safetensors_header_refuses_what_is_not_a_header(data: bytes) -> None:
    with pytest.raises(CheckpointError):
        read_safetensors_header(data)


def test_a_deeply_nested_header_is_refused_before_json_parses_it() -> None:
    text = b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with pytest.raises(CheckpointError, match="nested deeper"):
        read_safetensors_header(struct.pack("<Q", len(text)) + text)


def test_truncated_or_padded_tensor_data_is_refused() -> None:
    data = _checkpoint()
    with pytest.raises(CheckpointError, match="data bytes"):
        check_checkpoint_header(data[:-4])
    with pytest.raises(CheckpointError, match="data bytes"):
        check_checkpoint_header(data + b"\x00" * 4)


def test_header_modules_import_neither_torch_nor_registry() -> None:
    code = (
        "import sys\n"
        "import modelformat.spec, training.digests, training.errors, training.card, "
        "training.evaluate\n"
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
