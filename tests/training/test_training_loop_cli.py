"""The training loop, the CLI end to end, and (slow) the default recipe's accuracy."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from trainkit import write_npz

from training.card import canonical_json, card_digest
from training.checkpoint import canonical_tensor_digest, load_checkpoint_bytes
from training.cli import add_train_arguments, main, parse_parent_digest, run_train
from training.config import TrainConfig
from training.data import Dataset, load_dataset
from training.errors import ConfigError
from training.evaluate import evaluate_model
from training.loop import random_shift, resolve_device, train

FAST = {"epochs": 4, "batch_size": 32, "device": "cpu"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    path = write_npz(tmp_path_factory.mktemp("toy") / "toy.npz", num_classes=3, sizes=(96, 24, 30))
    return load_dataset(path)


def test_loss_falls_and_the_best_validation_epoch_is_kept(toy: Dataset) -> None:
    outcome = train(toy, TrainConfig(**FAST), quiet=True)
    losses = [e.train_loss for e in outcome.history]
    assert len(losses) == 4
    assert losses[-1] < losses[0] * 0.8
    best = max(outcome.history, key=lambda e: (e.val_accuracy, -e.val_loss))
    assert outcome.best_epoch == best.epoch
    assert outcome.best_val_accuracy == best.val_accuracy
    assert outcome.device == "cpu" and outcome.precision == "float32"
    assert not outcome.model.training


def test_same_seed_gives_the_same_weights_and_another_seed_does_not(toy: Dataset) -> None:
    before = torch.random.get_rng_state()
    digests = [
        canonical_tensor_digest(
            train(toy, TrainConfig(**FAST, seed=s), quiet=True).model.state_dict()
        )
        for s in (7, 7, 8)
    ]
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]
    # The caller's global RNG is left as it was.
    assert torch.equal(torch.random.get_rng_state(), before)


def test_random_shift_moves_each_image_by_at_most_the_limit() -> None:
    images = torch.arange(6 * 6, dtype=torch.uint8).view(1, 1, 6, 6).repeat(50, 2, 1, 1)
    shifted = random_shift(images, 1, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    assert torch.equal(shifted[:, 0], shifted[:, 1])  # one shift per image, all channels
    # The centre pixel (row 2, col 2 = value 14) comes from a neighbour at most one step away.
    centre = shifted[:, 0, 2, 2].long()
    rows, cols = centre // 6, centre % 6
    assert (rows - 2).abs().max() <= 1 and (cols - 2).abs().max() <= 1
    assert len(set(centre.tolist())) > 1  # it does shift
    # Edges repeat instead of wrapping around.
    edge = random_shift(images[:1], 3, torch.Generator().manual_seed(1))[0, 0]
    assert set(edge.unique().tolist()) <= set(images[0, 0].unique().tolist())


def test_unknown_or_unavailable_devices_are_refused_clearly() -> None:
    with pytest.raises(ConfigError, match="not a torch device"):
        resolve_device("gpu-please")
    with pytest.raises(ConfigError, match="only cpu and cuda"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
        assert resolve_device("auto").type == "cpu"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("batch_size", -1),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("val_fraction", 0.6),
        ("max_shift", 9),
    ],
)
def test_config_refuses_out_of_range_settings(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == field


def test_parent_digest_is_normalised_or_refused() -> None:
    hex64 = "AB" * 32
    assert parse_parent_digest(f"sha256:{hex64}") == "ab" * 32
    assert parse_parent_digest(f"0x{hex64}") == "ab" * 32
    assert parse_parent_digest(None) is None
    with pytest.raises(ConfigError, match="64 hex"):
        parse_parent_digest("ab" * 31)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(argv)


def test_run_train_writes_a_checkpoint_and_card_that_agree(tmp_path: Path) -> None:
    data = write_npz(tmp_path / "toy.npz", num_classes=3, sizes=(96, 24, 30))
    parent = "cd" * 32
    args = parse(
        [
            "--data",
            str(data),
            "--epochs",
            "3",
            "--batch-size",
            "32",
            "--out",
            str(tmp_path / "out"),
            "--parent",
            parent,
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    result = run_train(args)

    checkpoint = result.checkpoint_path.read_bytes()
    assert result.checkpoint_sha256 == hashlib.sha256(checkpoint).hexdigest()
    card_bytes = result.card_path.read_bytes()
    # The card file is its own canonical form: its SHA-256 is the anchored card digest.
    assert hashlib.sha256(card_bytes).hexdigest() == result.card_digest
    card = json.loads(card_bytes)
    assert canonical_json(card) == card_bytes and card_digest(card) == result.card_digest

    dataset = load_dataset(data)
    assert result.test_set_digest == dataset.test.digest()
    assert card["evaluation"]["test_set_sha256"] == result.test_set_digest
    assert card["evaluation"]["accuracy_bps"] == result.accuracy_bps
    assert card["checkpoint"]["sha256"] == result.checkpoint_sha256
    assert card["parent_digest"] == parent
    assert card["dataset"]["is_stand_in"] is False
    assert card["training"]["seed"] == 0 and card["training"]["config"]["epochs"] == 3
    assert set(card["environment"]) >= {"python", "torch", "numpy", "safetensors"}
    assert card["model_name"] == "lenet5-toy"

    # The accuracy is the loaded checkpoint's, measured on the test split.
    model, spec = load_checkpoint_bytes(checkpoint)
    assert evaluate_model(model, dataset.test, spec).accuracy_bps == result.accuracy_bps
    assert canonical_tensor_digest(model.state_dict()) == result.tensor_digest


def test_two_runs_with_the_same_seed_write_identical_files(tmp_path: Path) -> None:
    data = write_npz(tmp_path / "toy.npz", num_classes=2, sizes=(40, 10, 10))
    results = [
        run_train(
            parse(["--data", str(data), "--epochs", "2", "--out", str(tmp_path / d), "--quiet"])
        )
        for d in ("a", "b")
    ]
    assert results[0].checkpoint_sha256 == results[1].checkpoint_sha256
    assert results[0].card_digest == results[1].card_digest


def test_builtin_run_is_labelled_stand_in_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--epochs", "1", "--out", str(tmp_path), "--device", "cpu"])
    assert code == 0
    out, err = capsys.readouterr()
    assert "STAND-IN" in err and "not medical" in err
    assert "stand-in" in out and out.startswith("sha256:")
    card = json.loads((tmp_path / "model_card.json").read_bytes())
    assert card["dataset"]["is_stand_in"] is True
    assert "NOT medical data" in " ".join(card["limitations"])
    assert "must never be used on patient images" in card["intended_use"]
    _, spec = load_checkpoint_bytes((tmp_path / "model.safetensors").read_bytes())
    assert "stand-in" in spec.dataset


def test_main_reports_bad_data_as_an_error_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert main(["--data", str(bad), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.npz" in err
    assert not (tmp_path / "o").exists()


def test_main_json_output_is_machine_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_npz(tmp_path / "toy.npz", num_classes=2, sizes=(40, 10, 10))
    assert (
        main(["--data", str(data), "--epochs", "1", "--out", str(tmp_path), "--quiet", "--json"])
        == 0
    )
    out, err = capsys.readouterr()
    assert err == ""
    result = json.loads(out)
    assert (
        result["accuracy_bps"]
        == json.loads((tmp_path / "model_card.json").read_bytes())["evaluation"]["accuracy_bps"]
    )
    assert len(result["test_set_digest"]) == 64


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--data-format", "csv"])
    assert info.value.code == 2
    assert "--data-format" in capsys.readouterr().err


def test_python_dash_m_training_runs_standalone() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "training", "--help"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert done.returncode == 0
    assert "(default: 40)" in done.stdout and "--data-format" in done.stdout


@pytest.mark.slow
def test_default_recipe_reaches_97_percent_on_the_builtin_dataset(tmp_path: Path) -> None:
    result = run_train(parse(["--out", str(tmp_path), "--quiet"]))
    assert result.is_stand_in
    assert result.accuracy_bps >= 9700, result.metrics
