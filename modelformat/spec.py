"""What a LeNet-5 checkpoint must look like, decided without importing torch.

The registry and the trainer refuse a checkpoint *before* any deserialiser touches it:
``modelformat.header`` reads the safetensors header (a length-prefixed JSON object) and compares
it with what this module says the network needs. Keeping that knowledge here, in plain Python,
means the verification path never pulls in torch, and the training side and the registry cannot
drift apart: ``model.py`` builds its layers from the same numbers that ``expected_tensor_specs``
reports.

Network (no padding, so a 28x28 input flattens to 16*4*4, not the 16*5*5 of the padded original)::

    conv1 5x5, in_channels -> 6   ReLU  maxpool 2x2
    conv2 5x5, 6 -> 16            ReLU  maxpool 2x2
    fc1   16*s*s -> 120           ReLU      (s derived from input_size by ``feature_map_size``)
    fc2   120 -> 84               ReLU
    fc3   84 -> num_classes                (logits)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from modelformat import strictjson
from modelformat.errors import SpecError
from modelformat.text import ambiguous_pair, text_problem

ARCHITECTURE: Final = "lenet5"
ARCHITECTURE_VERSION: Final = "1"
# safetensors' own convention for "these tensors are meant for PyTorch".
CHECKPOINT_FORMAT: Final = "pt"
TENSOR_DTYPE: Final = "F32"

# The header's __metadata__ keys, in the order the writer emits them (byte-determinism).
METADATA_KEYS: Final = (
    "format",
    "architecture",
    "architecture_version",
    "in_channels",
    "input_size",
    "num_classes",
    "class_names",
    "normalization",
    "dataset",
)

CONV_KERNEL: Final = 5
POOL: Final = 2
CONV1_CHANNELS: Final = 6
CONV2_CHANNELS: Final = 16
FC1_UNITS: Final = 120
FC2_UNITS: Final = 84

ALLOWED_IN_CHANNELS: Final = (1, 3)  # grayscale or RGB; nothing else ships in the formats we read
# 16 is the smallest input that leaves a 1x1 map after the second pool; 256 bounds fc1 at ~15M
# weights, far above anything a 28x28 LeNet needs but below what a header could use to make a
# loader allocate gigabytes.
MIN_INPUT_SIZE: Final = 16
MAX_INPUT_SIZE: Final = 256
MIN_CLASSES: Final = 2
MAX_CLASSES: Final = 1000
MAX_NAME_LENGTH: Final = 200
# Normalisation is stated on pixels scaled to [0, 1] (pixel / 255), whose mean lies in [0, 1]
# and whose std is at most 0.5; MAX_STD = 1 also admits a hand-written "std 1" (no scaling).
# MIN_STD: an 8-bit channel varies by whole grey levels (1/255 = 0.0039), so a std below 1e-3
# means its pixels vary by less than a quarter of a level on average, or fewer than one in a
# million differ from the background even at full contrast: no image a network can learn from.
# Every real normalisation of 8-bit images lies inside, and the bound keeps the network's input
# (pixel / 255 - mean) / std within +-1000, far from float16's (mixed precision) 65504 and from
# the infinities that a std of 1e-300 gives at inference. Values for the 0..255 scale (mean
# 33.3, std 78.6) are outside on purpose: they would be divided by 255 a second time.
MIN_MEAN: Final = 0.0
MAX_MEAN: Final = 1.0
MIN_STD: Final = 1e-3
MAX_STD: Final = 1.0

_DECIMAL = re.compile(r"[1-9][0-9]{0,6}")


def feature_map_size(input_size: int) -> int:
    """Side of the square map that enters fc1, for a square input of side ``input_size``.

    Each 5x5 valid convolution removes 4 pixels, each 2x2 pool halves (flooring): 28 -> 24 -> 12
    -> 8 -> 4.
    """
    if not MIN_INPUT_SIZE <= input_size <= MAX_INPUT_SIZE:
        raise SpecError(
            "input_size",
            input_size,
            f"must be between {MIN_INPUT_SIZE} and {MAX_INPUT_SIZE} pixels",
        )
    side = (input_size - (CONV_KERNEL - 1)) // POOL
    return (side - (CONV_KERNEL - 1)) // POOL


def flattened_size(input_size: int) -> int:
    """Number of inputs of fc1: 16 channels times the final map area (256 for 28x28)."""
    return CONV2_CHANNELS * feature_map_size(input_size) ** 2


def expected_tensor_specs(
    in_channels: int, input_size: int, num_classes: int
) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every tensor of the network's ``state_dict``: name -> (safetensors dtype, shape).

    The names are exactly ``LeNet5.state_dict()``'s keys, so a header can be compared key by key.
    """
    _check_int("in_channels", in_channels, ALLOWED_IN_CHANNELS[0], ALLOWED_IN_CHANNELS[-1])
    if in_channels not in ALLOWED_IN_CHANNELS:
        raise SpecError("in_channels", in_channels, "must be 1 (grayscale) or 3 (RGB)")
    _check_int("num_classes", num_classes, MIN_CLASSES, MAX_CLASSES)
    flat = flattened_size(input_size)
    k = CONV_KERNEL
    shapes: dict[str, tuple[int, ...]] = {
        "conv1.weight": (CONV1_CHANNELS, in_channels, k, k),
        "conv1.bias": (CONV1_CHANNELS,),
        "conv2.weight": (CONV2_CHANNELS, CONV1_CHANNELS, k, k),
        "conv2.bias": (CONV2_CHANNELS,),
        "fc1.weight": (FC1_UNITS, flat),
        "fc1.bias": (FC1_UNITS,),
        "fc2.weight": (FC2_UNITS, FC1_UNITS),
        "fc2.bias": (FC2_UNITS,),
        "fc3.weight": (num_classes, FC2_UNITS),
        "fc3.bias": (num_classes,),
    }
    return {name: (TENSOR_DTYPE, shape) for name, shape in shapes.items()}


@dataclass(frozen=True)
class ModelSpec:
    """Everything the inference side needs to rebuild and feed the network.

    ``mean`` and ``std`` are per channel, on pixel values scaled to [0, 1]: the network sees
    ``(pixel / 255 - mean) / std``.
    """

    in_channels: int
    input_size: int
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dataset: str
    architecture: str = ARCHITECTURE
    architecture_version: str = ARCHITECTURE_VERSION

    def __post_init__(self) -> None:
        if self.architecture != ARCHITECTURE:
            raise SpecError("architecture", self.architecture, f"only {ARCHITECTURE!r} is built")
        if self.architecture_version != ARCHITECTURE_VERSION:
            raise SpecError(
                "architecture_version",
                self.architecture_version,
                f"only version {ARCHITECTURE_VERSION!r} of {ARCHITECTURE} is known",
            )
        if self.in_channels not in ALLOWED_IN_CHANNELS:
            raise SpecError("in_channels", self.in_channels, "must be 1 (grayscale) or 3 (RGB)")
        _check_int("input_size", self.input_size, MIN_INPUT_SIZE, MAX_INPUT_SIZE)
        _check_int("num_classes", self.num_classes, MIN_CLASSES, MAX_CLASSES)
        _check_class_names(self.class_names, self.num_classes)
        for key, values, low, high in (
            ("mean", self.mean, MIN_MEAN, MAX_MEAN),
            ("std", self.std, MIN_STD, MAX_STD),
        ):
            if len(values) != self.in_channels:
                raise SpecError(
                    "normalization",
                    {key: list(values)},
                    f"{key} needs one value per channel ({self.in_channels})",
                )
            for v in values:
                if not (isinstance(v, float) and math.isfinite(v) and low <= v <= high):
                    raise SpecError(
                        "normalization",
                        {key: list(values)},
                        f"{key} values must be finite floats in [{low:g}, {high:g}], on pixels "
                        "scaled to [0, 1] (pixel / 255: divide values of the 0..255 scale by 255)",
                    )
        _check_text("dataset", self.dataset)

    def to_metadata(self) -> dict[str, str]:
        """The safetensors ``__metadata__`` mapping, keys in ``METADATA_KEYS`` order."""
        values = {
            "format": CHECKPOINT_FORMAT,
            "architecture": self.architecture,
            "architecture_version": self.architecture_version,
            "in_channels": str(self.in_channels),
            "input_size": str(self.input_size),
            "num_classes": str(self.num_classes),
            "class_names": _compact_json(list(self.class_names)),
            "normalization": _compact_json({"mean": list(self.mean), "std": list(self.std)}),
            "dataset": self.dataset,
        }
        return {key: values[key] for key in METADATA_KEYS}

    def tensor_specs(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        return expected_tensor_specs(self.in_channels, self.input_size, self.num_classes)


def parse_metadata(meta: Mapping[str, str]) -> ModelSpec:
    """Strictly parse a safetensors ``__metadata__`` mapping; raise ``SpecError`` naming the key.

    Every key of ``METADATA_KEYS`` must be present with a string value, and no other key may be:
    the format is versioned through ``architecture_version``, so an unknown key means a writer
    this reader does not understand.
    """
    if not isinstance(meta, Mapping):
        raise SpecError("__metadata__", type(meta).__name__, "must be an object of strings")
    for key in meta:
        if key not in METADATA_KEYS:
            raise SpecError(
                key, meta[key], f"unknown key; expected only {', '.join(METADATA_KEYS)}"
            )
    for key in METADATA_KEYS:
        if key not in meta:
            raise SpecError(key, None, "missing from the header metadata")
        if not isinstance(meta[key], str):
            raise SpecError(key, meta[key], "must be a string (safetensors metadata is str->str)")
    if meta["format"] != CHECKPOINT_FORMAT:
        raise SpecError("format", meta["format"], f"must be {CHECKPOINT_FORMAT!r} (PyTorch)")
    if meta["architecture"] != ARCHITECTURE:
        raise SpecError("architecture", meta["architecture"], f"only {ARCHITECTURE!r} is built")
    if meta["architecture_version"] != ARCHITECTURE_VERSION:
        raise SpecError(
            "architecture_version",
            meta["architecture_version"],
            f"only version {ARCHITECTURE_VERSION!r} of {ARCHITECTURE} is known",
        )

    names = _strict_json("class_names", meta["class_names"])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SpecError("class_names", meta["class_names"], "must be a JSON list of strings")
    norm = _strict_json("normalization", meta["normalization"])
    if not isinstance(norm, dict) or set(norm) != {"mean", "std"}:
        raise SpecError(
            "normalization", meta["normalization"], 'must be {"mean": [...], "std": [...]}'
        )
    channels: dict[str, tuple[float, ...]] = {}
    for key in ("mean", "std"):
        values = norm[key]
        if not isinstance(values, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        ):
            raise SpecError("normalization", meta["normalization"], f"{key} must list numbers")
        channels[key] = tuple(float(v) for v in values)

    return ModelSpec(
        in_channels=_parse_decimal("in_channels", meta["in_channels"]),
        input_size=_parse_decimal("input_size", meta["input_size"]),
        num_classes=_parse_decimal("num_classes", meta["num_classes"]),
        class_names=tuple(names),
        mean=channels["mean"],
        std=channels["std"],
        dataset=meta["dataset"],
        architecture=meta["architecture"],
        architecture_version=meta["architecture_version"],
    )


# --- helpers ---------------------------------------------------------------------------------


def _strict_json(key: str, text: str) -> Any:
    try:
        return strictjson.loads(text)
    except strictjson.StrictJSONError as exc:
        raise SpecError(key, text, f"the value {exc}") from None


def _compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _parse_decimal(key: str, text: str) -> int:
    # No sign, no leading zeros, no whitespace: one integer has exactly one spelling.
    if not _DECIMAL.fullmatch(text):
        raise SpecError(key, text, "must be a positive decimal integer without sign or padding")
    return int(text)


def _check_int(key: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SpecError(key, value, f"must be an integer between {low} and {high}")


def _check_text(key: str, value: object, index: int | None = None) -> None:
    """Text a clinician reads (``modelformat.text``'s rules); ``index``: a class name's."""
    what = "must" if index is None else f"class name {index} must"
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        raise SpecError(
            key, value, f"{what} be non-blank text of at most {MAX_NAME_LENGTH} characters", index
        )
    problem = text_problem(value)
    if problem is not None:
        raise SpecError(
            key, value, problem if index is None else f"class name {index} {problem}", index
        )


def _check_class_names(names: object, num_classes: int) -> None:
    if not isinstance(names, tuple) or len(names) != num_classes:
        raise SpecError("class_names", names, f"must list exactly {num_classes} names")
    for index, name in enumerate(names):
        _check_text("class_names", name, index)
    pair = ambiguous_pair(names)
    if pair is not None:
        i, j = pair
        raise SpecError(
            "class_names",
            list(names),
            "names must be distinct"
            if names[i] == names[j]
            else f"class names {i} and {j} ({names[i]!r}, {names[j]!r}) look the same (equal "
            "after Unicode NFKC normalisation); give the classes names a reader can tell apart",
            j,
        )
