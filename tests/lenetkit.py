"""The LeNet-5 tensors a checkpoint must hold, written out from the network's definition rather
than from ``modelformat.spec``, so that tests check that code against an independent oracle."""


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
