"""The training loop: whole splits on the device, batches by index, best epoch on validation.

Why not a ``DataLoader``: 28x28 datasets fit in memory many times over, and per-sample Python
transforms (PIL -> ToTensor -> Normalize) cost more than LeNet's forward and backward pass. Here
a batch is one gather from a uint8 tensor plus one fused multiply-add for normalisation.

Choices (see ``TrainConfig`` for the numbers): AdamW with a one-cycle learning-rate schedule
converges in a few hundred steps where plain SGD needs thousands; the weights kept are those of
the epoch with the best validation accuracy, so the test split is touched exactly once, after
training, by the caller. The only augmentation is a small random shift per image, done on the
whole batch with one gather.

Reproducibility: weights and batch order come from ``config.seed`` (global RNG forked, so the
caller's RNG state is left alone); deterministic algorithms are requested for the duration of
the run. The same seed on the same machine and library versions gives the same weights.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from modelformat.spec import ModelSpec
from training.config import TrainConfig
from training.data import Dataset, Split
from training.errors import ConfigError
from training.model import LeNet5, build_model, normalize, spec_normalization


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float
    val_loss: float
    images_per_s: float


@dataclass(frozen=True)
class TrainOutcome:
    """The best epoch's network (CPU, eval mode) and how it was obtained."""

    model: LeNet5
    spec: ModelSpec
    history: tuple[EpochStats, ...]
    best_epoch: int
    best_val_accuracy: float
    device: str
    precision: str
    train_seconds: float
    images_per_s: float


def resolve_device(requested: str) -> torch.device:
    """``auto`` -> first CUDA device if available, else CPU; anything else must exist here."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ConfigError(
            "device", requested, "is not a torch device ('cpu', 'cuda:0', ...)"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", requested, "CUDA is not available here; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError("device", requested, "only cpu and cuda are supported")
    return device


def spec_for(dataset: Dataset) -> ModelSpec:
    """The checkpoint spec of a network trained on ``dataset`` (normalisation from its train split)."""
    mean, std = dataset.normalization()
    return ModelSpec(
        in_channels=dataset.in_channels,
        input_size=dataset.input_size,
        num_classes=dataset.num_classes,
        class_names=dataset.class_names,
        mean=mean,
        std=std,
        dataset=dataset.name,
    )


def train(dataset: Dataset, config: TrainConfig, *, quiet: bool = False) -> TrainOutcome:
    """Train LeNet-5 on ``dataset.train``, select on ``dataset.val``; never looks at test."""
    device = resolve_device(config.device)
    spec = spec_for(dataset)
    amp_dtype = _amp_dtype(device, config.amp)
    precision = "float32" if amp_dtype is None else str(amp_dtype).removeprefix("torch.")

    with _reproducible(config.seed, device):
        # channels_last lets oneDNN/cuDNN vectorise convolution and pooling over channels;
        # it was ~10 % faster on CPU. The checkpoint writer makes weights contiguous again.
        model = build_model(spec).to(device).to(memory_format=torch.channels_last)
        generator = torch.Generator().manual_seed(config.seed)
        mean, std = spec_normalization(spec, device)
        train_x = dataset.train.images.to(device)
        train_y = dataset.train.labels.to(device)
        n = int(train_y.shape[0])
        steps_per_epoch = math.ceil(n / config.batch_size)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.lr,
            total_steps=config.epochs * steps_per_epoch,
            pct_start=config.warmup_fraction,
        )
        # Loss scaling is only needed for float16; bfloat16 has float32's exponent range.
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

        history: list[EpochStats] = []
        best_accuracy, best_loss, best_epoch = -1.0, math.inf, 0
        best_state: dict[str, torch.Tensor] = {}
        train_seconds = 0.0
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = torch.randperm(n, generator=generator).to(device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            bar = tqdm(
                total=n,
                desc=f"epoch {epoch}/{config.epochs}",
                unit="img",
                file=sys.stderr,
                disable=quiet,
                leave=True,
                dynamic_ncols=True,
            )
            started = time.perf_counter()
            for step, index in enumerate(order.split(config.batch_size)):
                batch = train_x[index]
                if config.max_shift:
                    batch = random_shift(batch, config.max_shift, generator)
                x = normalize(batch, mean, std).contiguous(memory_format=torch.channels_last)
                y = train_y[index]
                with torch.autocast(
                    device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
                ):
                    logits = model(x)
                    loss = F.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                # Accumulate on the device: reading .item() every step would stall a GPU.
                loss_sum += loss.detach().float() * y.shape[0]
                correct += (logits.argmax(1) == y).sum()
                bar.update(int(y.shape[0]))
                if not quiet and (step + 1) % 20 == 0:
                    bar.set_postfix(loss=f"{loss.item():.4f}")
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - started
            train_seconds += elapsed
            val_accuracy, val_loss = score_on(
                model, dataset.val, mean, std, config.eval_batch_size, amp_dtype
            )
            stats = EpochStats(
                epoch=epoch,
                train_loss=loss_sum.item() / n,
                train_accuracy=correct.item() / n,
                val_accuracy=val_accuracy,
                val_loss=val_loss,
                images_per_s=n / elapsed if elapsed > 0 else math.inf,
            )
            history.append(stats)
            bar.set_postfix(
                loss=f"{stats.train_loss:.4f}",
                acc=f"{stats.train_accuracy:.2%}",
                val=f"{val_accuracy:.2%}",
                img_s=f"{stats.images_per_s:,.0f}",
            )
            bar.close()
            if not math.isfinite(stats.train_loss):
                raise ConfigError(
                    "lr",
                    config.lr,
                    f"training diverged at epoch {epoch} (loss is not finite); lower it",
                )
            # A small validation split often ties on accuracy (several epochs at 100 %); the
            # lower validation loss breaks the tie, so selection keeps improving after that.
            if (val_accuracy, -val_loss) > (best_accuracy, -best_loss):
                best_accuracy, best_loss, best_epoch = val_accuracy, val_loss, epoch
                best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                }

        # Built inside the forked RNG too: its (discarded) initialisation must not consume the
        # caller's random stream.
        final = build_model(spec)
        final.load_state_dict(best_state, strict=True)
        final.eval()

    total_images = n * config.epochs
    return TrainOutcome(
        model=final,
        spec=spec,
        history=tuple(history),
        best_epoch=best_epoch,
        best_val_accuracy=best_accuracy,
        device=_describe(device),
        precision=precision,
        train_seconds=train_seconds,
        images_per_s=total_images / train_seconds if train_seconds > 0 else math.inf,
    )


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image of an NCHW batch by its own random (dy, dx) in [-max_shift, max_shift].

    One gather with clamped indices: pixels shifted in from outside repeat the edge (no black
    borders on scans whose background is not black). Shifts come from ``generator`` (CPU) so
    the augmentation is part of the seeded, reproducible stream.
    """
    b, c, h, w = images.shape
    device = images.device
    shifts = torch.randint(-max_shift, max_shift + 1, (2, b), generator=generator).to(device)
    rows = (torch.arange(h, device=device)[None, :] + shifts[0][:, None]).clamp_(0, h - 1)
    cols = (torch.arange(w, device=device)[None, :] + shifts[1][:, None]).clamp_(0, w - 1)
    # Flat source index of every output pixel, shared by all channels of an image.
    flat = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return images.reshape(b, c, h * w).gather(2, flat).view(b, c, h, w)


@torch.no_grad()
def score_on(
    model: torch.nn.Module,
    split: Split,
    mean: torch.Tensor,
    std: torch.Tensor,
    batch_size: int,
    amp_dtype: torch.dtype | None = None,
) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``split`` (for model selection)."""
    model.eval()
    device = mean.device
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for images, labels in zip(
        split.images.split(batch_size), split.labels.split(batch_size), strict=True
    ):
        labels = labels.to(device)
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            logits = model(normalize(images.to(device), mean, std))
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").double()
        correct += (logits.argmax(1) == labels).sum()
    model.train()
    return correct.item() / len(split), loss_sum.item() / len(split)


def _amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


@contextlib.contextmanager
def _reproducible(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch and ask for deterministic kernels; restore the caller's settings afterwards."""
    if device.type == "cuda":
        # cuBLAS needs this before its first handle is created to run deterministically.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    devices = [device.index or 0] if device.type == "cuda" else []
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.utils.deterministic.fill_uninitialized_memory,  # type: ignore[attr-defined]
    )
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        # warn_only: an op without a deterministic kernel should not abort a long run.
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic mode also NaN-fills every new tensor, a debugging aid that cost ~8 % of
        # CPU training time here; no kernel we use reads memory it has not written.
        torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
            torch.backends.cudnn.benchmark = previous[2]
            torch.backends.cudnn.deterministic = previous[3]
            torch.utils.deterministic.fill_uninitialized_memory = previous[4]  # type: ignore[attr-defined]
