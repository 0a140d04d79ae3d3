"""Every loader on tiny files in the real formats, and every kind of bad data."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets.mnist import read_image_file, read_label_file
from trainkit import idx_bytes, pattern_images, write_idx_folder, write_npz, write_png_folder

from training.data import (
    BUILTIN_NAME,
    Dataset,
    load_builtin,
    load_dataset,
    read_idx,
    upsample_bilinear,
)
from training.digests import split_digest
from training.errors import DataError


def check_consistent(ds: Dataset) -> None:
    for split in (ds.train, ds.val, ds.test):
        assert split.images.dtype == torch.uint8
        assert split.labels.dtype == torch.int64
        assert split.images.dim() == 4
        assert split.images.shape[0] == split.labels.shape[0] > 0
        assert int(split.labels.min()) >= 0
        assert int(split.labels.max()) < ds.num_classes


# --- IDX -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_loads_like_torchvision_reads_it(tmp_path: Path, gz: bool) -> None:
    train = pattern_images(50, 10, seed=1)
    test = pattern_images(20, 10, seed=2)
    write_idx_folder(tmp_path / "mnist", train, test, gz=gz)
    ds = load_dataset(tmp_path / "mnist", seed=3)
    check_consistent(ds)
    assert ds.format == "idx"
    assert ds.class_names == tuple(str(i) for i in range(10))
    assert not ds.is_stand_in
    assert (len(ds.train), len(ds.val), len(ds.test)) == (45, 5, 20)
    assert torch.equal(ds.test.images[:, 0], torch.from_numpy(test[0]))
    assert torch.equal(ds.test.labels, torch.from_numpy(test[1]))
    # Validation is carved out of train: together they are exactly the training file.
    merged = torch.cat([ds.train.labels, ds.val.labels]).sort().values
    assert torch.equal(merged, torch.from_numpy(train[1]).sort().values)
    if not gz:
        # An independent reader of the same files agrees with ours.
        tv = read_image_file(str(tmp_path / "mnist" / "t10k-images-idx3-ubyte"))
        assert torch.equal(tv, ds.test.images[:, 0])
        tv_labels = read_label_file(str(tmp_path / "mnist" / "t10k-labels-idx1-ubyte"))
        assert torch.equal(tv_labels, ds.test.labels)


def test_idx_is_found_in_torchvisions_mnist_raw_layout(tmp_path: Path) -> None:
    write_idx_folder(
        tmp_path / "MNIST" / "raw", pattern_images(30, 3), pattern_images(9, 3, seed=1)
    )
    ds = load_dataset(tmp_path)
    assert ds.format == "idx" and len(ds.test) == 9


def test_carved_validation_depends_on_the_seed_and_only_on_it(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, pattern_images(100, 4), pattern_images(10, 4, seed=1))
    a, b, c = (load_dataset(tmp_path, seed=s) for s in (0, 0, 1))
    assert a.digests() == b.digests()
    assert a.digests()["val"] != c.digests()["val"]
    assert a.digests()["test"] == c.digests()["test"]


def test_truncated_idx_is_refused_with_the_file_named(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, pattern_images(30, 3), pattern_images(9, 3, seed=1))
    target = tmp_path / "train-images-idx3-ubyte"
    target.write_bytes(target.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated") as info:
        load_dataset(tmp_path)
    assert info.value.source == str(target)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "bad magic"),
        (b"\x01\x00\x08\x03", "bad magic"),
        (b"\x00\x00\x0d\x03" + b"\x00" * 12, "type 0x0d"),
        (b"\x00\x00\x08\x01" + b"\x00" * 4, "1 dimension"),
        (b"\x00\x00\x08\x03\x00\x00", "header"),
    ],
)
def test_malformed_idx_headers_are_refused(tmp_path: Path, data: bytes, problem: str) -> None:
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(DataError, match=problem):
        read_idx(path, ndim=3)


def test_corrupt_and_truncated_gzip_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "a.gz"
    bad.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="cannot be read"):
        read_idx(bad, ndim=1)
    cut = tmp_path / "b.gz"
    cut.write_bytes(gzip.compress(idx_bytes(np.zeros((100, 28, 28), np.uint8)))[:-20])
    with pytest.raises(DataError, match="cannot be read"):
        read_idx(cut, ndim=3)


def test_missing_idx_label_file_is_named(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, pattern_images(30, 3), pattern_images(9, 3, seed=1))
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_dataset(tmp_path, "idx")


def test_idx_image_and_label_counts_must_match(tmp_path: Path) -> None:
    images, labels = pattern_images(30, 3)
    write_idx_folder(tmp_path, (images, labels[:29]), pattern_images(9, 3, seed=1))
    with pytest.raises(DataError, match="29 labels but train-images-idx3-ubyte holds 30"):
        load_dataset(tmp_path)


def test_idx_folder_without_the_files_says_which_files_it_needs(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_dataset(tmp_path, "idx")


# --- MedMNIST .npz ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "classes", "column"), [(1, 2, True), (3, 9, False), (1, 5, True)]
)
def test_npz_loads_grayscale_and_rgb_with_its_own_validation_split(
    tmp_path: Path, channels: int, classes: int, column: bool
) -> None:
    path = write_npz(
        tmp_path / "toy.npz", num_classes=classes, channels=channels, column_labels=column
    )
    ds = load_dataset(path)
    check_consistent(ds)
    assert ds.format == "npz" and ds.val_origin == "file"
    assert (len(ds.train), len(ds.val), len(ds.test)) == (60, 15, 30)
    assert ds.in_channels == channels and ds.input_size == 28
    assert ds.class_names == tuple(f"class_{i}" for i in range(classes))
    with np.load(path) as raw:
        expected = raw["test_images"]
    expected = expected.transpose(0, 3, 1, 2) if channels == 3 else expected[:, None]
    assert np.array_equal(ds.test.images.numpy(), expected)


def test_npz_without_validation_carves_it_from_train(tmp_path: Path) -> None:
    ds = load_dataset(write_npz(tmp_path / "toy.npz", sizes=(50, 20)), seed=1)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (45, 5, 20)
    assert ds.val_origin.startswith("carved from train")


@pytest.mark.parametrize(
    ("stem", "classes", "names"),
    [
        ("pneumoniamnist", 2, ("normal", "pneumonia")),
        ("breastmnist", 2, ("malignant", "normal, benign")),
        ("pathmnist_64", 9, None),
    ],
)
def test_known_medmnist_files_get_their_class_names(
    tmp_path: Path, stem: str, classes: int, names: tuple[str, ...] | None
) -> None:
    size = 64 if stem.endswith("_64") else 28
    ds = load_dataset(write_npz(tmp_path / f"{stem}.npz", num_classes=classes, size=size))
    assert ds.num_classes == classes
    if names:
        assert ds.class_names == names
    else:
        assert ds.class_names[0] == "adipose" and ds.input_size == 64


def test_label_beyond_a_known_datasets_classes_is_refused(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "pneumoniamnist.npz", num_classes=3)
    with pytest.raises(DataError, match="label 2, but this dataset has 2 classes"):
        load_dataset(path)


def test_npz_with_wrong_keys_lists_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"missing key.*test_images.*found: x_train"):
        load_dataset(path)


def test_npz_with_val_images_but_no_val_labels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    images, labels = pattern_images(10, 2)
    np.savez(
        path,
        train_images=images,
        train_labels=labels,
        test_images=images,
        test_labels=labels,
        val_images=images,
    )
    with pytest.raises(DataError, match="val_images without its partner"):
        load_dataset(path)


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"train_images": np.zeros((60, 28, 28), np.float32)}, "dtype float32"),
        ({"train_images": np.zeros((60, 784), np.uint8)}, r"shape \(60, 784\)"),
        ({"train_images": np.zeros((60, 28, 28, 4), np.uint8)}, "shape"),
        ({"train_images": np.zeros((60, 28, 20), np.uint8)}, "28x20"),
        ({"test_images": np.zeros((30, 32, 32), np.uint8)}, "different image shapes"),
        ({"train_labels": np.zeros(59, np.int64)}, "60 images but train_labels has 59"),
        ({"train_labels": np.zeros((60, 14), np.int64)}, "multi-label"),
        ({"train_labels": np.full(60, 0.5)}, "dtype float64"),
        ({"test_labels": np.full(30, -1)}, "negative label -1"),
        (
            {"test_images": np.zeros((0, 28, 28), np.uint8), "test_labels": np.zeros(0, np.int64)},
            "is empty",
        ),
        ({"train_labels": np.zeros(60, np.int64)}, "has no image of class"),
    ],
)
def test_npz_bad_arrays_are_refused_with_the_problem_named(
    tmp_path: Path, override: dict[str, object], problem: str
) -> None:
    path = write_npz(tmp_path / "bad.npz", **override)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=problem) as info:
        load_dataset(path)
    assert "bad" in info.value.source  # the file (or its split) is named


def test_npz_object_arrays_are_refused_not_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "pickled.npz"
    images, labels = pattern_images(10, 2)
    np.savez(
        path,
        train_images=np.array([images], dtype=object),
        train_labels=labels,
        test_images=images,
        test_labels=labels,
    )
    with pytest.raises(DataError, match=r"cannot be read as a \.npz"):
        load_dataset(path)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"definitely not a zip"])
def test_corrupt_npz_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"cannot be read as a \.npz"):
        load_dataset(path)


def test_a_file_that_is_not_npz_is_refused_in_auto_mode(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(b"\x80\x04")
    with pytest.raises(DataError, match=r"not a \.npz"):
        load_dataset(path)


def test_download_is_only_attempted_when_asked_and_given_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs --data DIR"):
        load_dataset(None, download=True)
    with pytest.raises(DataError, match="only MNIST"):
        load_dataset(tmp_path, "npz", download=True)


def test_missing_path_and_unknown_format_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope.npz")
    with pytest.raises(DataError, match="unknown format 'csv'"):
        load_dataset(tmp_path, "csv")
    with pytest.raises(DataError, match="needs a path"):
        load_dataset(None, "npz")


# --- image folders ---------------------------------------------------------------------------


def test_flat_image_folder_is_split_per_class_deterministically(tmp_path: Path) -> None:
    images, labels = pattern_images(60, 3)
    write_png_folder(tmp_path / "imgs", images, labels, ["cat a", "cat b", "cat c"])
    ds = load_dataset(tmp_path / "imgs", seed=5)
    check_consistent(ds)
    assert ds.format == "folder" and ds.class_names == ("cat a", "cat b", "cat c")
    assert ds.in_channels == 1
    assert (len(ds.train), len(ds.val), len(ds.test)) == (42, 6, 12)
    for split in (ds.train, ds.val, ds.test):  # every class in every split
        assert set(split.labels.tolist()) == {0, 1, 2}
    again = load_dataset(tmp_path / "imgs", seed=5)
    assert again.digests() == ds.digests()
    # PNG is lossless: the pixels that went in come back out.
    pool = {img.tobytes() for img in images}
    assert all(img[0].numpy().tobytes() in pool for img in ds.test.images)


def test_class_folders_named_in_nfd_become_nfc_labels(tmp_path: Path) -> None:
    # macOS hands back file names decomposed: "e" + U+0301 for "é". The labels are text people
    # read, and the checkpoint's format check takes NFC only.
    import unicodedata

    images, labels = pattern_images(30, 2)
    names = [unicodedata.normalize("NFD", n) for n in ("pneumonie sévère", "poumon sain")]
    write_png_folder(tmp_path / "imgs", images, labels, names)

    ds = load_dataset(tmp_path / "imgs", seed=5)

    assert ds.class_names == ("pneumonie s\u00e9v\u00e8re", "poumon sain")
    assert (len(ds.train) + len(ds.val) + len(ds.test)) == 30


def test_folder_with_split_subfolders_uses_them_and_resizes_rgb(tmp_path: Path) -> None:
    for split, n, seed in (("train", 20, 0), ("test", 8, 1)):
        images, labels = pattern_images(n, 2, size=40, channels=3, seed=seed)
        write_png_folder(tmp_path / split, images, labels, ["benign", "malignant"], suffix=".jpg")
    ds = load_dataset(tmp_path)
    check_consistent(ds)
    assert ds.in_channels == 3 and ds.input_size == 28
    assert (len(ds.train) + len(ds.val), len(ds.test)) == (20, 8)
    assert ds.class_names == ("benign", "malignant")


def test_a_folder_mixing_gray_and_colour_images_becomes_rgb(tmp_path: Path) -> None:
    from PIL import Image

    gray, labels = pattern_images(10, 2, seed=3)
    write_png_folder(tmp_path, gray, labels, ["a", "b"])
    colour = np.zeros((28, 28, 3), np.uint8)
    colour[..., 0] = 255
    Image.fromarray(colour).save(tmp_path / "a" / "red.png")
    ds = load_dataset(tmp_path, seed=1)
    assert ds.in_channels == 3
    everything = torch.cat([ds.train.images, ds.val.images, ds.test.images])
    is_red = (everything[:, 0] == 255).all(dim=(1, 2)) & (everything[:, 1] == 0).all(dim=(1, 2))
    assert int(is_red.sum()) == 1
    others = everything[~is_red]
    # Gray images are replicated across the three channels, pixel for pixel.
    assert torch.equal(others[:, 0], others[:, 1]) and torch.equal(others[:, 0], others[:, 2])
    assert {img[0].numpy().tobytes() for img in others} == {img.tobytes() for img in gray}


def test_corrupt_image_in_a_folder_is_named(tmp_path: Path) -> None:
    images, labels = pattern_images(12, 2)
    write_png_folder(tmp_path, images, labels, ["a", "b"])
    bad = tmp_path / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="not a readable image") as info:
        load_dataset(tmp_path)
    assert info.value.source == str(bad)


def test_folder_without_class_subfolders_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(tmp_path, "folder")


def test_folder_with_a_single_class_is_refused(tmp_path: Path) -> None:
    images, labels = pattern_images(10, 1)
    write_png_folder(tmp_path, images, labels, ["only"])
    with pytest.raises(DataError, match="1 class"):
        load_dataset(tmp_path, "folder")


# --- built-in stand-in and digests -----------------------------------------------------------


def test_builtin_dataset_is_labelled_as_a_stand_in_with_a_fixed_split() -> None:
    ds = load_dataset(None)
    check_consistent(ds)
    assert ds.is_stand_in and ds.name == BUILTIN_NAME and "not medical" in ds.name
    assert (len(ds.train), len(ds.val), len(ds.test)) == (1248, 181, 368)
    assert ds.in_channels == 1 and ds.input_size == 28 and ds.num_classes == 10
    for split in (ds.train, ds.val, ds.test):
        assert torch.bincount(split.labels, minlength=10).min() > 0
    assert load_builtin().digests() == ds.digests()


def test_builtin_upsampling_matches_torch_bilinear() -> None:
    rng = np.random.default_rng(0)
    small = rng.uniform(0, 16, size=(4, 8, 8))
    ours = upsample_bilinear(small, 28)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(small)[:, None], size=28, mode="bilinear", align_corners=False
    )[:, 0]
    assert np.allclose(ours, ref.numpy(), atol=1e-12)


def test_split_digest_follows_the_documented_layout() -> None:
    images = np.arange(2 * 1 * 2 * 2, dtype=np.uint8).reshape(2, 1, 2, 2)
    labels = np.array([1, 0], dtype=np.int64)
    expected = hashlib.sha256(
        b"dataset-split/v1\n"
        + struct.pack("<4I", 2, 1, 2, 2)
        + bytes(range(8))
        + struct.pack("<2q", 1, 0)
    ).hexdigest()
    assert split_digest(images, labels) == expected


def test_the_same_test_pixels_give_the_same_digest_from_any_format(tmp_path: Path) -> None:
    train = pattern_images(40, 3, seed=1)
    test = pattern_images(12, 3, seed=2)
    write_idx_folder(tmp_path / "idx", train, test, gz=True)
    np.savez(
        tmp_path / "same.npz",
        train_images=train[0],
        train_labels=train[1],
        test_images=test[0],
        test_labels=test[1][:, None],
    )
    from_idx = load_dataset(tmp_path / "idx").test.digest()
    from_npz = load_dataset(tmp_path / "same.npz").test.digest()
    assert from_idx == from_npz
    changed = test[0].copy()
    changed[0, 0, 0] ^= 1
    np.savez(
        tmp_path / "other.npz",
        train_images=train[0],
        train_labels=train[1],
        test_images=changed,
        test_labels=test[1],
    )
    assert load_dataset(tmp_path / "other.npz").test.digest() != from_idx
