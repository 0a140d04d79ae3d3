"""The network, its safetensors checkpoint, and the canonical tensor digest."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from safetensors import safe_open

import training.checkpoint
from modelformat.header import inspect_checkpoint
from modelformat.spec import ModelSpec
from training.checkpoint import (
    canonical_tensor_digest,
    checkpoint_bytes,
    load_checkpoint_bytes,
    save_checkpoint,
)
from training.errors import MalformedCheckpoint, PickleRejected
from training.model import LeNet5, build_model, normalize, predict_proba

ROOT = Path(__file__).resolve().parents[2]


def make_spec(channels: int = 1, classes: int = 3, size: int = 28) -> ModelSpec:
    return ModelSpec(
        in_channels=channels,
        input_size=size,
        num_classes=classes,
        class_names=tuple(f"c{i}" for i in range(classes)),
        mean=(0.2,) * channels,
        std=(0.3,) * channels,
        dataset="toy",
    )


def seeded_model(spec: ModelSpec, seed: int = 0) -> LeNet5:
    torch.manual_seed(seed)
    return build_model(spec)


def images(n: int, spec: ModelSpec, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (n, spec.in_channels, spec.input_size, spec.input_size)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


@pytest.mark.parametrize(
    ("channels", "classes", "size"), [(1, 2, 28), (3, 9, 28), (1, 10, 32), (3, 4, 64)]
)
def test_network_gives_one_logit_per_class(channels: int, classes: int, size: int) -> None:
    model = LeNet5(channels, classes, size)
    out = model(torch.zeros(5, channels, size, size))
    assert out.shape == (5, classes)


def test_normalize_maps_pixels_to_standard_scores_per_channel() -> None:
    pixels = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    mean = torch.tensor([0.0, 0.2, 0.5])
    std = torch.tensor([1.0, 0.1, 0.25])
    out = normalize(pixels, mean, std)
    assert torch.allclose(out.view(3), torch.tensor([0.0, 0.0, 2.0]), atol=1e-6)


def test_predict_proba_returns_probabilities_and_checks_the_input_shape() -> None:
    spec = make_spec(classes=4)
    probs = predict_proba(seeded_model(spec), images(7, spec), spec, batch_size=3)
    assert probs.shape == (7, 4)
    assert torch.allclose(probs.sum(1), torch.ones(7), atol=1e-5)
    with pytest.raises(ValueError, match="uint8 of shape"):
        predict_proba(seeded_model(spec), images(2, make_spec(channels=3)), spec)
    with pytest.raises(ValueError, match="uint8 of shape"):
        predict_proba(seeded_model(spec), images(2, spec).float(), spec)


@pytest.mark.parametrize("channels", [1, 3])
def test_checkpoint_loaded_from_bytes_predicts_exactly_like_the_original(
    tmp_path: Path, channels: int
) -> None:
    spec = make_spec(channels=channels, classes=5)
    model = seeded_model(spec)
    path = tmp_path / "model.safetensors"
    sha = save_checkpoint(model, spec, path)
    data = path.read_bytes()
    assert sha == hashlib.sha256(data).hexdigest()

    loaded, loaded_spec = load_checkpoint_bytes(data)
    assert loaded_spec == spec
    assert not loaded.training
    batch = images(16, spec)
    assert torch.equal(predict_proba(loaded, batch, spec), predict_proba(model, batch, spec))


def test_save_is_byte_deterministic_even_across_processes(tmp_path: Path) -> None:
    spec = make_spec()
    first = checkpoint_bytes(seeded_model(spec), spec)
    assert checkpoint_bytes(seeded_model(spec), spec) == first
    # safetensors' own writer orders __metadata__ by a per-process hash seed; ours must not.
    code = (
        "import sys, torch\n"
        "from training.checkpoint import checkpoint_bytes\n"
        "from training.model import build_model\n"
        "from modelformat.spec import ModelSpec\n"
        "spec = ModelSpec(1, 28, 3, ('c0','c1','c2'), (0.2,), (0.3,), 'toy')\n"
        "torch.manual_seed(0)\n"
        "sys.stdout.buffer.write(checkpoint_bytes(build_model(spec), spec))\n"
    )
    for hash_seed in ("1", "2"):
        other = subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            cwd=ROOT,
            env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"},
        ).stdout
        assert other == first


def test_checkpoint_is_a_standard_safetensors_file(tmp_path: Path) -> None:
    spec = make_spec()
    model = seeded_model(spec)
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, spec, path)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == spec.to_metadata()
        for name, tensor in model.state_dict().items():
            assert torch.equal(f.get_tensor(name), tensor)
    data = path.read_bytes()
    start = inspect_checkpoint(data).data_start
    assert start % 8 == 0
    assert next(iter(json.loads(data[8:start]))) == "__metadata__"


def test_save_refuses_weights_that_are_not_finite(tmp_path: Path) -> None:
    spec = make_spec()
    model = seeded_model(spec)
    with torch.no_grad():
        model.fc2.bias[0] = float("nan")
    with pytest.raises(MalformedCheckpoint, match=r"fc2\.bias") as info:
        save_checkpoint(model, spec, tmp_path / "m.safetensors")
    assert info.value.problem == "non_finite_weights"
    assert not (tmp_path / "m.safetensors").exists()


def test_save_refuses_to_write_what_the_header_check_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec()
    good = checkpoint_bytes(seeded_model(spec), spec)
    monkeypatch.setattr(training.checkpoint, "checkpoint_bytes", lambda m, s: good + bytes(4))
    with pytest.raises(MalformedCheckpoint) as info:
        save_checkpoint(seeded_model(spec), spec, tmp_path / "m.safetensors")
    assert info.value.problem == "trailing_data"
    assert list(tmp_path.iterdir()) == []


def test_load_refuses_a_pickle_without_unpickling_it() -> None:
    spec = make_spec()
    buffer = io.BytesIO()
    torch.save(seeded_model(spec).state_dict(), buffer)
    with pytest.raises(PickleRejected):
        load_checkpoint_bytes(buffer.getvalue())


def test_load_refuses_a_safetensors_file_without_our_metadata() -> None:
    spec = make_spec()
    data = safetensors.torch.save(seeded_model(spec).state_dict())
    with pytest.raises(MalformedCheckpoint, match="__metadata__") as info:
        load_checkpoint_bytes(data)
    assert info.value.problem == "missing_metadata"


def _counting_inspect(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def counting(data: Any, **kw: Any) -> Any:
        calls.append(1)
        return inspect_checkpoint(data, **kw)

    monkeypatch.setattr(training.checkpoint, "inspect_checkpoint", counting)
    return calls


def test_load_checks_the_header_itself_unless_handed_the_check_of_these_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = make_spec()
    data = checkpoint_bytes(seeded_model(spec), spec)
    checked = inspect_checkpoint(data)
    calls = _counting_inspect(monkeypatch)

    _, loaded_spec = load_checkpoint_bytes(data, checked)
    assert loaded_spec == spec and calls == []
    load_checkpoint_bytes(data)
    assert calls == [1]


def test_a_check_holds_for_other_weights_under_the_same_header() -> None:
    # Tensor bytes are only checked for NaN and infinities: same header, same length, finite
    # weights, same verdict.
    spec = make_spec()
    checked = inspect_checkpoint(checkpoint_bytes(seeded_model(spec), spec))
    model, _ = load_checkpoint_bytes(checkpoint_bytes(seeded_model(spec, seed=1), spec), checked)
    assert torch.equal(model.fc3.bias, seeded_model(spec, seed=1).fc3.bias)


@pytest.mark.parametrize("change", ["header", "length"])
def test_load_refuses_a_check_made_for_other_bytes(change: str) -> None:
    spec = make_spec()
    data = checkpoint_bytes(seeded_model(spec), spec)
    checked = inspect_checkpoint(data)
    (n,) = struct.unpack("<Q", data[:8])
    other = {
        "header": data[:8] + data[8 : 8 + n].replace(b'"toy"', b'"TOY"') + data[8 + n :],
        "length": data + bytes(4),
    }[change]
    assert other != data and len(other) - len(data) == (4 if change == "length" else 0)
    with pytest.raises(ValueError, match="describes other bytes"):
        load_checkpoint_bytes(other, checked)


def test_canonical_digest_ignores_the_file_format_but_not_the_weights() -> None:
    spec = make_spec()
    model = seeded_model(spec)
    digest = canonical_tensor_digest(model.state_dict())
    # Through safetensors' own writer (different header, different order): same weights.
    reread = safetensors.torch.load(safetensors.torch.save(model.state_dict()))
    assert canonical_tensor_digest(reread) == digest
    # Insertion order of the mapping does not matter either.
    assert canonical_tensor_digest(dict(reversed(list(model.state_dict().items())))) == digest

    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["fc3.bias"][0] += 1e-6
    assert canonical_tensor_digest(state) != digest
    renamed = dict(model.state_dict())
    renamed["fc4.bias"] = renamed.pop("fc3.bias")
    assert canonical_tensor_digest(renamed) != digest
    reshaped = dict(model.state_dict())
    reshaped["fc3.bias"] = reshaped["fc3.bias"].view(1, -1)
    assert canonical_tensor_digest(reshaped) != digest
    retyped = dict(model.state_dict())
    retyped["fc3.bias"] = retyped["fc3.bias"].double()
    assert canonical_tensor_digest(retyped) != digest


def test_canonical_digest_follows_the_documented_layout() -> None:
    # One tensor, computed by hand from the layout in training.digests.
    t = torch.tensor([1.0, -2.0], dtype=torch.float32)
    expected = hashlib.sha256(
        b"tensor-set/v1\n"
        + (1).to_bytes(4, "little")
        + (1).to_bytes(4, "little")
        + b"w"
        + (3).to_bytes(4, "little")
        + b"F32"
        + (1).to_bytes(4, "little")
        + (2).to_bytes(8, "little")
        + (8).to_bytes(8, "little")
        + bytes.fromhex("0000803f000000c0")
    ).hexdigest()
    assert canonical_tensor_digest({"w": t}) == expected


def test_metadata_in_the_checkpoint_header_is_plain_json_strings() -> None:
    spec = make_spec(classes=2)
    metadata = inspect_checkpoint(checkpoint_bytes(seeded_model(spec), spec)).metadata
    assert json.loads(metadata["class_names"]) == ["c0", "c1"]
    assert metadata["input_size"] == "28"
