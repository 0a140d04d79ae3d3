"""The format check refuses what would only fail at inference: NaN or infinite weights, and
normalisation values no 8-bit image has (a std of 1e-300 makes every input infinite)."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lenetkit import lenet_metadata, lenet_shapes

from modelformat.header import FLOAT_DTYPES, first_non_finite, inspect_checkpoint
from modelformat.spec import MAX_STD, MIN_STD, TENSOR_DTYPE, ModelSpec, parse_metadata
from training.checkpoint import load_checkpoint_bytes
from training.errors import MalformedCheckpoint, SpecError

TORCH_DTYPES = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
}


def arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: (rng.standard_normal(shape) * 0.1).astype(np.float32)
        for name, shape in lenet_shapes().items()
    }


def checkpoint(values: dict[str, np.ndarray] | None = None, **meta: str) -> bytes:
    return safetensors.numpy.save(values or arrays(), metadata={**lenet_metadata(), **meta})


def raw(values: torch.Tensor) -> bytes:
    return values.contiguous().view(torch.uint8).numpy().tobytes()


# --- first_non_finite -----------------------------------------------------------------------


def test_every_dtype_the_spec_admits_has_its_values_scanned() -> None:
    assert TENSOR_DTYPE in FLOAT_DTYPES


@pytest.mark.parametrize("dtype", sorted(TORCH_DTYPES))
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_first_non_finite_finds_the_first_nan_or_infinity_of_each_float_dtype(
    dtype: str, bad: float
) -> None:
    kind = TORCH_DTYPES[dtype]
    values = torch.linspace(-1, 1, 1000, dtype=torch.float64).to(kind)
    # The largest finite values share every exponent bit but one with an infinity.
    values[0], values[1] = torch.finfo(kind).max, -torch.finfo(kind).max
    values[2] = torch.finfo(kind).tiny
    assert first_non_finite(raw(values), dtype) is None
    values[517], values[900] = bad, bad
    assert first_non_finite(raw(values), dtype) == 517


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(TORCH_DTYPES)),
    st.lists(st.integers(0, 255), min_size=0, max_size=64),
)
def test_first_non_finite_agrees_with_torch_on_arbitrary_bytes(dtype: str, data: list[int]) -> None:
    size = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}[dtype]
    buffer = bytes(data[: len(data) - len(data) % size])
    values = torch.frombuffer(bytearray(buffer), dtype=TORCH_DTYPES[dtype]) if buffer else None
    bad = [] if values is None else (~torch.isfinite(values)).nonzero().flatten().tolist()
    assert first_non_finite(buffer, dtype) == (bad[0] if bad else None)


def test_first_non_finite_refuses_bytes_that_are_not_whole_values() -> None:
    with pytest.raises(ValueError, match="not whole F32 values"):
        first_non_finite(bytes(6), "F32")


# --- non-finite weights ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tensor", "index", "value", "shown"),
    [
        ("fc3.bias", 3, math.nan, "nan"),
        ("conv1.weight", 0, math.inf, "inf"),
        ("fc1.weight", 30_719, -math.inf, "-inf"),
    ],
)
def test_a_checkpoint_with_a_nan_or_infinite_weight_is_refused_naming_the_tensor(
    tensor: str, index: int, value: float, shown: str
) -> None:
    values = arrays()
    values[tensor].reshape(-1)[index] = value

    with pytest.raises(MalformedCheckpoint) as info:
        inspect_checkpoint(checkpoint(values))

    exc = info.value
    assert (exc.problem, exc.key, exc.details["key"]) == ("non_finite_weights", tensor, tensor)
    assert f"tensor '{tensor}' holds {shown} at element {index} of" in exc.reason


def test_the_loader_refuses_nan_weights_through_the_same_check() -> None:
    values = arrays()
    values["fc2.weight"][0, 0] = math.nan
    with pytest.raises(MalformedCheckpoint) as info:
        load_checkpoint_bytes(checkpoint(values))
    assert (info.value.problem, info.value.key) == ("non_finite_weights", "fc2.weight")


def test_a_check_does_not_describe_the_same_header_with_a_nan_in_its_weights() -> None:
    # The loader skips the parse only for bytes the check describes: NaN bytes under the checked
    # header must not ride on the check of finite ones.
    data = checkpoint()
    checked = inspect_checkpoint(data)
    poisoned = bytearray(data)
    poisoned[-4:] = struct.pack("<f", math.nan)
    assert checked.describes(data) and checked.describes(memoryview(data))
    assert not checked.describes(poisoned)
    with pytest.raises(ValueError, match="describes other bytes"):
        load_checkpoint_bytes(bytes(poisoned), checked)


def test_large_finite_weights_pass() -> None:
    values = arrays()
    values["fc3.weight"][0, :2] = [np.finfo(np.float32).max, -np.finfo(np.float32).max]
    assert inspect_checkpoint(checkpoint(values)).spec.num_classes == 10


# --- normalisation ----------------------------------------------------------------------------


def normalization(mean: Any, std: Any) -> str:
    return '{"mean":[' + str(mean) + '],"std":[' + str(std) + "]}"


@pytest.mark.parametrize(
    ("mean", "std"),
    [
        (0.5, "1e-300"),
        (0.5, "0.0009"),
        (0.5, "0"),
        (0.5, "-0.25"),
        (0.5, "1e400"),  # JSON's way to an infinity
        (0.5, "1.5"),
        ("1e300", 0.25),
        ("-1e-9", 0.25),
        (33.3, 78.6),  # MNIST's normalisation on the 0..255 scale
    ],
)
def test_normalisation_no_8_bit_image_has_is_refused_at_the_format_check(
    mean: Any, std: Any
) -> None:
    data = checkpoint(normalization=normalization(mean, std))
    with pytest.raises(MalformedCheckpoint) as info:
        inspect_checkpoint(data)
    exc = info.value
    assert (exc.problem, exc.key) == ("bad_metadata", "normalization")
    assert "pixels scaled to [0, 1]" in exc.reason


@pytest.mark.parametrize(
    ("mean", "std"),
    [(0.1307, 0.3081), (0.5, 0.5), (0.0, 1.0), (1.0, MIN_STD), (0.5, MAX_STD), (0, 1)],
)
def test_every_real_normalisation_of_8_bit_images_passes(mean: Any, std: Any) -> None:
    data = checkpoint(normalization=normalization(mean, std))
    spec = inspect_checkpoint(data).spec
    assert (spec.mean, spec.std) == ((float(mean),), (float(std),))


@pytest.mark.parametrize("std", [1e-300, 0.0, math.inf, math.nan, MIN_STD / 2, MAX_STD * 2])
def test_a_model_spec_with_an_unusable_std_is_refused(std: float) -> None:
    with pytest.raises(SpecError) as info:
        ModelSpec(
            in_channels=1,
            input_size=28,
            num_classes=2,
            class_names=("a", "b"),
            mean=(0.5,),
            std=(std,),
            dataset="toy",
        )
    assert info.value.key == "normalization"


def test_the_smallest_std_an_8_bit_channel_reaches_with_a_full_grey_level_passes() -> None:
    # Half the pixels one grey level apart from the rest: std = 0.5 / 255, four times the floor.
    meta = lenet_metadata()
    meta["normalization"] = json.dumps({"mean": [0.5], "std": [0.5 / 255]})
    assert parse_metadata(meta).std == (0.5 / 255,)
