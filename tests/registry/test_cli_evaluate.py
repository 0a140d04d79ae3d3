"""`registry evaluate`: an anchored accuracy claim re-run by anyone, on the chain and the data.

Models are trained by `registry train` itself on tiny generated data in the real file formats
(MedMNIST .npz, MNIST IDX, an image folder) and registered on the session's anvil node with
their cards, as a registrar would; then ``main(argv)`` re-evaluates them. Bad input is refused
before the chain is asked, so those tests need no node.
"""

from __future__ import annotations

import json
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from registry.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from registry.cli.evaluate import CUDA_TOLERANCE_BPS, default_tolerance_bps
from registry.core.digest import digest_file

CLASSES = 3
# Images per split: small enough that three epochs train in about a second on one core.
SIZES = {"train": 90, "val": 15, "test": 60}
MEMORY = ("--rpc-url", "memory")
RESULT_KEYS = {
    "file",
    "digest",
    "chain_id",
    "outcome",
    "reproduced",
    "registered",
    "revoked",
    "record",
    "claim",
    "data",
    "data_format",
    "measured",
    "same_test_set",
    "difference_bps",
    "tolerance_bps",
}

Arrays = tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]


def band_images(
    n: int, *, seed: int, channels: int = 1, size: int = 28, classes: int = CLASSES
) -> Arrays:
    """``n`` images, (N, H, W) or (N, H, W, C), whose class c brightens horizontal band c over
    noise drawn from ``seed``; the band is faint enough that three epochs leave some images
    wrong (70-95 %), so a reproduced accuracy is not the trivial 100 %."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % classes
    rng.shuffle(labels)
    images = rng.integers(0, 140, size=(n, size, size, channels), dtype=np.uint8)
    band = size // classes
    for i, c in enumerate(labels):
        images[i, c * band : (c + 1) * band, 6 : size - 6, :] += 50
    return (images[..., 0] if channels == 1 else images), labels


def write_npz(path: Path, *, test_seed: int = 2, **shape: Any) -> Path:
    """A MedMNIST-style archive; ``test_seed`` draws the test split alone."""
    arrays: dict[str, np.ndarray] = {}
    for split, seed in (("train", 0), ("val", 1), ("test", test_seed)):
        images, labels = band_images(SIZES[split], seed=seed, **shape)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels[:, None]
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def write_idx(folder: Path) -> Path:
    """The four MNIST-format files, each 0, 0, 0x08, ndim, big-endian dims, then the bytes."""
    folder.mkdir()
    for prefix, split, seed in (("train", "train", 0), ("t10k", "test", 2)):
        images, labels = band_images(SIZES[split], seed=seed)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels.astype(np.uint8))):
            header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            (folder / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())
    return folder


def write_png_folder(root: Path) -> Path:
    """``root/<class>/*.png`` without train/test sub-folders: the test split follows the seed."""
    from PIL import Image

    images, labels = band_images(sum(SIZES.values()), seed=0)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / f"finding_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"scan_{i:04d}.png")
    return root


WRITERS: dict[str, Callable[[Path], Path]] = {
    "npz": lambda tmp: write_npz(tmp / "scans.npz"),
    "idx": lambda tmp: write_idx(tmp / "idx"),
    "folder": lambda tmp: write_png_folder(tmp / "images"),
}


@dataclass(frozen=True)
class Trained:
    """What `registry train` wrote for one data set, and the claim its card makes."""

    data: Path
    checkpoint: Path
    card: Path
    accuracy_bps: int
    test_set_digest: str  # sha256:<hex>


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Trained]:
    """format -> Trained; each format is trained once per module, when first asked for."""
    made: dict[str, Trained] = {}

    def get(fmt: str) -> Trained:
        if fmt not in made:
            tmp = tmp_path_factory.mktemp(fmt)
            data, out = WRITERS[fmt](tmp), tmp / "model"
            argv = ["train", "--data", str(data), "--out", str(out), "--epochs", "3"]
            assert main([*argv, "--max-shift", "0", "--device", "cpu", "--quiet"]) == EXIT_OK
            card = json.loads((out / "model_card.json").read_text())["evaluation"]
            made[fmt] = Trained(
                data,
                out / "model.safetensors",
                out / "model_card.json",
                card["accuracy_bps"],
                f"sha256:{card['test_set_sha256']}",
            )
        return made[fmt]

    return get


@pytest.fixture
def npz_model(trained: Callable[[str], Trained]) -> Trained:
    return trained("npz")


@pytest.fixture
def chain(anvil: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    """The flags that point a command at the session's anvil registry (reverted after the test),
    with the admin's key, which holds the registrar and revoker roles."""
    monkeypatch.setenv("REGISTRY_PRIVATE_KEY", anvil.keys[0])
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "registry-data"))
    return ("--rpc-url", anvil.endpoint, "--contract", anvil.client.address)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def evaluate_json(
    capsys: pytest.CaptureFixture[str],
    chain: tuple[str, ...],
    model: Trained,
    *extra: str,
    data: Path | None = None,
) -> tuple[int, dict[str, Any]]:
    """`registry --json evaluate` of ``model`` on ``data`` (default: its own)."""
    data = data or model.data
    argv = ["--json", "evaluate", str(model.checkpoint), "--data", str(data), *extra]
    code, out, _ = run(capsys, *chain, *argv)
    return code, json.loads(out)


def register_card(
    capsys: pytest.CaptureFixture[str], chain: tuple[str, ...], model: Trained
) -> None:
    code, _, err = run(capsys, *chain, "register", str(model.checkpoint), "--card", str(model.card))
    assert code == EXIT_OK, err


def register_claim(
    capsys: pytest.CaptureFixture[str], chain: tuple[str, ...], model: Trained, accuracy_bps: int
) -> None:
    """Anchor the trained weights with an accuracy of the registrant's choosing."""
    evidence = ["--accuracy-bps", str(accuracy_bps), "--test-set-digest", model.test_set_digest]
    evidence += ["--card-digest", str(digest_file(model.card))]
    code, _, err = run(capsys, *chain, "register", str(model.checkpoint), *evidence)
    assert code == EXIT_OK, err


# --- the claim holds ---------------------------------------------------------------------


@pytest.mark.anvil
@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_evaluate_reproduces_the_anchored_accuracy_on_the_data_it_was_measured_on(
    fmt: str, trained: Callable[[str], Trained], chain: tuple[str, ...], capsys
) -> None:
    model = trained(fmt)
    register_card(capsys, chain, model)
    code, out, _ = run(capsys, *chain, "evaluate", str(model.checkpoint), "--data", str(model.data))
    assert code == EXIT_OK, out
    assert out.startswith(f"REPRODUCED {model.checkpoint}: claimed ")
    code, result = evaluate_json(capsys, chain, model)
    assert code == EXIT_OK
    assert result["outcome"] == "reproduced" and result["reproduced"] is True
    assert result["measured"]["accuracy_bps"] == model.accuracy_bps < 10_000
    assert result["measured"]["test_set_digest"] == model.test_set_digest
    assert result["same_test_set"] is True
    assert result["difference_bps"] == 0 and result["tolerance_bps"] == 0


@pytest.mark.anvil
def test_evaluate_an_image_folder_split_by_another_seed_is_another_test_set(
    trained: Callable[[str], Trained], chain: tuple[str, ...], capsys
) -> None:
    model = trained("folder")
    register_card(capsys, chain, model)
    argv = ["evaluate", str(model.checkpoint), "--data", str(model.data), "--seed", "1"]
    code, out, _ = run(capsys, *chain, *argv)
    assert code == EXIT_FAILED
    assert out.startswith("DIFFERENT TEST SET") and "split by --seed" in out
    code, result = evaluate_json(capsys, chain, model, "--seed", "0")
    assert code == EXIT_OK and result["data_format"] == "folder"


@pytest.mark.anvil
def test_evaluate_json_has_the_record_the_claim_and_the_measurement(
    npz_model: Trained, chain: tuple[str, ...], capsys
) -> None:
    register_card(capsys, chain, npz_model)
    code, result = evaluate_json(capsys, chain, npz_model)
    assert code == EXIT_OK
    assert set(result) == RESULT_KEYS
    assert result["digest"] == str(digest_file(npz_model.checkpoint))
    assert result["record"]["digest"] == result["digest"]
    assert result["record"]["card_digest"] == str(digest_file(npz_model.card))
    assert result["claim"] == {
        "accuracy_bps": npz_model.accuracy_bps,
        "test_set_digest": npz_model.test_set_digest,
    }
    measured = result["measured"]
    assert set(measured) == {"test_set_digest", "n", "correct", "accuracy_bps", "device"}
    assert measured["n"] == SIZES["test"] and measured["device"] == "cpu"
    assert measured["accuracy_bps"] == measured["correct"] * 10_000 // measured["n"]
    assert (result["registered"], result["revoked"]) == (True, False)
    assert (result["data"], result["data_format"]) == (str(npz_model.data), "npz")


@pytest.mark.anvil
def test_evaluate_still_runs_a_revoked_checkpoint_and_says_it_is_revoked(
    npz_model: Trained, chain: tuple[str, ...], capsys
) -> None:
    register_card(capsys, chain, npz_model)
    digest = str(digest_file(npz_model.checkpoint))
    code, _, err = run(capsys, *chain, "revoke", digest, "--reason", "safety-issue")
    assert code == EXIT_OK, err
    code, out, _ = run(
        capsys, *chain, "evaluate", str(npz_model.checkpoint), "--data", str(npz_model.data)
    )
    assert code == EXIT_OK
    assert out.startswith("REPRODUCED") and "REVOKED (safety-issue)" in out
    code, result = evaluate_json(capsys, chain, npz_model)
    assert result["revoked"] is True and result["outcome"] == "reproduced"


# --- the claim does not hold, or cannot be checked ------------------------------------------


@pytest.mark.anvil
def test_evaluate_on_another_test_set_says_the_claim_was_not_made_on_this_data(
    npz_model: Trained, chain: tuple[str, ...], capsys, tmp_path: Path
) -> None:
    register_card(capsys, chain, npz_model)
    other = write_npz(tmp_path / "scans.npz", test_seed=7)
    argv = [*chain, "evaluate", str(npz_model.checkpoint), "--data", str(other)]
    code, out, _ = run(capsys, *argv)
    assert code == EXIT_FAILED
    assert out.startswith("DIFFERENT TEST SET") and "the claim was not made on this data" in out
    assert npz_model.test_set_digest in out
    code, result = evaluate_json(capsys, chain, npz_model, data=other)
    assert code == EXIT_FAILED
    measured = result["measured"]["test_set_digest"]
    assert measured != npz_model.test_set_digest and measured in out
    assert result["outcome"] == "different_test_set" and result["same_test_set"] is False
    # The accuracy measured here is information, not a verdict on the claim.
    assert result["reproduced"] is False and result["difference_bps"] is None
    assert "REPRODUCED" not in out


@pytest.mark.anvil
def test_evaluate_a_claim_the_weights_do_not_reach_is_not_reproduced(
    npz_model: Trained, chain: tuple[str, ...], capsys
) -> None:
    true = npz_model.accuracy_bps
    claimed = true - 500 if true >= 500 else true + 500
    register_claim(capsys, chain, npz_model, claimed)
    code, out, _ = run(
        capsys, *chain, "evaluate", str(npz_model.checkpoint), "--data", str(npz_model.data)
    )
    assert code == EXIT_FAILED
    assert out.startswith("NOT REPRODUCED")
    assert f"claimed {claimed / 100:.2f} % ({claimed} bps), measured {true / 100:.2f} %" in out
    code, result = evaluate_json(capsys, chain, npz_model)
    assert result["outcome"] == "not_reproduced" and result["same_test_set"] is True
    assert result["difference_bps"] == true - claimed
    # The tolerance is inclusive: a gap of exactly N bps is reproduced at --tolerance-bps N.
    assert evaluate_json(capsys, chain, npz_model, "--tolerance-bps", "499")[0] == EXIT_FAILED
    code, result = evaluate_json(capsys, chain, npz_model, "--tolerance-bps", "500")
    assert code == EXIT_OK and result["outcome"] == "reproduced"


@pytest.mark.anvil
def test_evaluate_an_unregistered_checkpoint_says_there_is_no_claim(
    npz_model: Trained, chain: tuple[str, ...], capsys
) -> None:
    code, out, _ = run(
        capsys, *chain, "evaluate", str(npz_model.checkpoint), "--data", str(npz_model.data)
    )
    assert code == EXIT_FAILED
    assert out.startswith(f"NOT REGISTERED {npz_model.checkpoint}")
    code, result = evaluate_json(capsys, chain, npz_model)
    assert code == EXIT_FAILED
    assert set(result) == RESULT_KEYS
    assert result["outcome"] == "unregistered" and result["registered"] is False
    assert result["measured"] is None and result["claim"] is None


# --- bad input: exit 2, before the chain is asked ---------------------------------------------


@pytest.mark.parametrize(
    ("shape", "named"),
    [
        ({"channels": 3}, "3-channel 28x28 images in 3 classes"),
        ({"size": 32}, "1-channel 32x32 images in 3 classes"),
        ({"classes": 4}, "1-channel 28x28 images in 4 classes"),
    ],
)
def test_evaluate_refuses_data_of_another_shape_than_the_checkpoint_header(
    shape: dict[str, int], named: str, npz_model: Trained, tmp_path: Path, capsys
) -> None:
    data = write_npz(tmp_path / "other.npz", **shape)
    argv = [*MEMORY, "evaluate", str(npz_model.checkpoint), "--data", str(data)]
    code, out, err = run(capsys, *argv)
    assert code == EXIT_USAGE and out == ""
    assert str(data) in err and named in err
    assert "takes 1-channel 28x28 images in 3 classes" in err
    code, out, _ = run(capsys, "--json", *argv)
    error = json.loads(out)["error"]
    assert code == EXIT_USAGE and error["code"] == "invalid_input"
    assert error["details"]["model_shape"] == {"in_channels": 1, "input_size": 28, "num_classes": 3}
    assert error["details"]["data"] == str(data)


def test_evaluate_refuses_missing_and_malformed_data_naming_the_path(
    npz_model: Trained, tmp_path: Path, capsys
) -> None:
    not_npz = tmp_path / "scans.npz"
    not_npz.write_bytes(b"not a zip archive")
    text = tmp_path / "scans.txt"
    text.write_text("pixels")
    for data, problem in (
        (tmp_path / "absent.npz", "does not exist"),
        (not_npz, "cannot be read as a .npz archive"),
        (text, "is a file but not a .npz"),
    ):
        argv = [*MEMORY, "--json", "evaluate", str(npz_model.checkpoint), "--data", str(data)]
        code, out, err = run(capsys, *argv)
        assert code == EXIT_USAGE, (data, err)
        assert str(data) in err and problem in err
        assert json.loads(out)["error"]["code"] == "invalid_dataset"


def test_evaluate_refuses_a_pickled_checkpoint_before_reading_data_or_chain(
    tmp_path: Path, capsys
) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"conv1.weight": [0.0]}))
    argv = ["--json", *MEMORY, "evaluate", str(path), "--data", str(tmp_path / "absent.npz")]
    code, out, _ = run(capsys, *argv)
    assert code == EXIT_USAGE
    assert json.loads(out)["error"]["code"] == "pickle_rejected"


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--tolerance-bps", "-1"), "--tolerance-bps -1"),
        (("--tolerance-bps", "10001"), "--tolerance-bps 10001"),
        (("--device", "tpu"), "'tpu'"),
    ],
)
def test_evaluate_refuses_bad_flags_naming_the_value(
    flags: tuple[str, str], named: str, npz_model: Trained, capsys
) -> None:
    argv = [*MEMORY, "evaluate", str(npz_model.checkpoint), "--data", str(npz_model.data), *flags]
    code, out, err = run(capsys, *argv)
    assert code == EXIT_USAGE and out == ""
    assert named in err


# --- tolerance --------------------------------------------------------------------------------


def test_default_tolerance_is_zero_on_the_cpu_and_at_least_one_image_on_cuda() -> None:
    assert default_tolerance_bps("cpu", 60) == 0
    assert default_tolerance_bps("cuda", 10_000) == CUDA_TOLERANCE_BPS
    # 60 images: one image is 166.7 bps, so one flipped prediction must not fail the claim.
    assert default_tolerance_bps("cuda", 60) == 167
