"""The LeNet-5 network, built from a ``ModelSpec`` so that training and inference agree.

Layer sizes come from ``modelformat.spec`` (torch-free, shared with the registry's header
check); this module only turns them into ``nn`` layers and says how raw pixels become inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modelformat.spec import (
    CONV1_CHANNELS,
    CONV2_CHANNELS,
    CONV_KERNEL,
    FC1_UNITS,
    FC2_UNITS,
    POOL,
    ModelSpec,
    expected_tensor_specs,
    flattened_size,
)


class LeNet5(nn.Module):
    """conv(5x5,6)-pool-conv(5x5,16)-pool-fc120-fc84-fc(num_classes), ReLU between layers."""

    def __init__(self, in_channels: int, num_classes: int, input_size: int = 28) -> None:
        super().__init__()
        # Validates the three numbers once, with the same messages the registry's check gives.
        expected_tensor_specs(in_channels, input_size, num_classes)
        self.conv1 = nn.Conv2d(in_channels, CONV1_CHANNELS, CONV_KERNEL)
        self.conv2 = nn.Conv2d(CONV1_CHANNELS, CONV2_CHANNELS, CONV_KERNEL)
        self.fc1 = nn.Linear(flattened_size(input_size), FC1_UNITS)
        self.fc2 = nn.Linear(FC1_UNITS, FC2_UNITS)
        self.fc3 = nn.Linear(FC2_UNITS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), POOL)
        x = F.max_pool2d(F.relu(self.conv2(x)), POOL)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def build_model(spec: ModelSpec) -> LeNet5:
    """A freshly initialised network of the shape ``spec`` describes (weights from the global RNG)."""
    return LeNet5(spec.in_channels, spec.num_classes, spec.input_size)


def normalize(
    images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 NCHW pixels -> ``(pixel / 255 - mean) / std``, on the whole batch at once.

    ``mean`` and ``std`` are per-channel 1-D tensors on the images' device. Folding the three
    operations into one multiply-add keeps this a single pass over the batch.
    """
    scale = (1.0 / (255.0 * std)).to(dtype).view(1, -1, 1, 1)
    shift = (-mean / std).to(dtype).view(1, -1, 1, 1)
    return images.to(dtype) * scale + shift


def spec_normalization(
    spec: ModelSpec, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The spec's per-channel mean and std as float32 tensors on ``device``."""
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=device)
    std = torch.tensor(spec.std, dtype=torch.float32, device=device)
    return mean, std


@torch.no_grad()
def predict_proba(
    model: nn.Module, images: torch.Tensor, spec: ModelSpec, batch_size: int = 1024
) -> torch.Tensor:
    """Class probabilities (float32, CPU) for uint8 NCHW ``images``, in evaluation mode.

    The single place where the inference side turns pixels into an answer, so it normalises
    exactly as training did.
    """
    expected = (spec.in_channels, spec.input_size, spec.input_size)
    if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"images must be uint8 of shape (N, {', '.join(map(str, expected))}), "
            f"got {images.dtype} {tuple(images.shape)}"
        )
    device = next(model.parameters()).device
    mean, std = spec_normalization(spec, device)
    was_training = model.training
    model.eval()
    try:
        out = [
            torch.softmax(model(normalize(chunk.to(device), mean, std)).float(), dim=1).cpu()
            for chunk in images.split(batch_size)
        ]
    finally:
        model.train(was_training)
    if not out:
        return torch.empty(0, spec.num_classes)
    return torch.cat(out)
