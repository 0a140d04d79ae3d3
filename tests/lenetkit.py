"""The LeNet-5 tensors and header metadata a checkpoint must hold, written out from the network's
definition and the documented header format rather than from ``modelformat.spec``, so that tests
check that code against an independent oracle."""

from __future__ import annotations

import json
from collections.abc import Sequence


def lenet_shapes(c: int = 1, size: int = 28, k: int = 10) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape for ``c`` input channels, a ``size``x``size`` input, ``k`` classes."""
    s = ((size - 4) // 2 - 4) // 2
    return {
        "conv1.weight": (6, c, 5, 5),
        "conv1.bias": (6,),
        "conv2.weight": (16, 6, 5, 5),
        "conv2.bias": (16,),
        "fc1.weight": (120, 16 * s * s),
        "fc1.bias": (120,),
        "fc2.weight": (84, 120),
        "fc2.bias": (84,),
        "fc3.weight": (k, 84),
        "fc3.bias": (k,),
    }


def lenet_metadata(
    c: int = 1,
    size: int = 28,
    k: int = 10,
    *,
    names: Sequence[str] | None = None,
    dataset: str = "pathmnist",
) -> dict[str, str]:
    """The header's ``__metadata__`` for that network; ``names`` default to class_0, class_1...

    Mean 0.5 and std 0.25 on every channel.
    """
    return {
        "format": "pt",
        "architecture": "lenet5",
        "architecture_version": "1",
        "in_channels": str(c),
        "input_size": str(size),
        "num_classes": str(k),
        "class_names": json.dumps(
            [f"class_{i}" for i in range(k)] if names is None else list(names)
        ),
        "normalization": json.dumps({"mean": [0.5] * c, "std": [0.25] * c}),
        "dataset": dataset,
    }
