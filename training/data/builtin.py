"""The built-in stand-in dataset: scikit-learn's digits, upsampled to 28x28. Not medical data.

It ships inside an installed package, so a demo or a test trains with no network and no files,
and its split needs no RNG: the same pixels, hence the same test-set digest, on every machine.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from training.data.types import IMAGE_SIZE, Dataset, Split

BUILTIN_NAME: Final = "sklearn-digits-28 (stand-in, not medical data)"


def load_builtin() -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, 10 classes), upsampled to 28x28. Not medical.

    The split is fixed and uses no RNG: within each class, in file order, image j goes to test
    if j % 10 < 2, to val if j % 10 == 2, else to train (about 70/10/20 %, every class in every
    split).
    """
    from sklearn.datasets import load_digits  # deferred: only this loader needs scikit-learn

    digits = load_digits()
    images = upsample_bilinear(np.asarray(digits.images, dtype=np.float64), IMAGE_SIZE)
    # The 8x8 values run 0..16; stretch to 0..255 and round half-to-even, as uint8 pixels.
    pixels = np.clip(np.rint(images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
    labels = np.asarray(digits.target, dtype=np.int64)
    position = np.zeros_like(labels)
    for c in range(10):
        members = np.flatnonzero(labels == c)
        position[members] = np.arange(members.size)
    bucket = position % 10
    masks = {"train": bucket >= 3, "val": bucket == 2, "test": bucket < 2}
    splits = {name: Split.from_arrays(pixels[mask], labels[mask]) for name, mask in masks.items()}
    return Dataset(
        name=BUILTIN_NAME,
        format="builtin",
        class_names=tuple(str(c) for c in range(10)),
        is_stand_in=True,
        val_origin="fixed rule (every 10th image of each class, offset 2)",
        **splits,
    )


def upsample_bilinear(images: npt.NDArray[np.float64], size: int) -> npt.NDArray[np.float64]:
    """Bilinear resize of (N, h, w) float64 images to (N, size, size), half-pixel centres.

    Same sampling as ``F.interpolate(mode="bilinear", align_corners=False)``, but written as
    separate float64 multiplies and adds (no BLAS, no fused multiply-add), so the rounded
    pixels, hence the built-in test-set digest, are the same on every machine.
    """

    def taps(
        n_in: int,
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        src = (np.arange(size, dtype=np.float64) + 0.5) * (n_in / size) - 0.5
        src = np.clip(src, 0.0, n_in - 1)
        low = np.floor(src).astype(np.intp)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, src - low

    y0, y1, wy = taps(images.shape[1])
    x0, x1, wx = taps(images.shape[2])
    rows = images[:, y0, :] * (1.0 - wy)[None, :, None] + images[:, y1, :] * wy[None, :, None]
    return rows[:, :, x0] * (1.0 - wx)[None, None, :] + rows[:, :, x1] * wx[None, None, :]
