"""`registry train --register`: train, write both files, anchor them, in one command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from registry.core.digest import digest_file


def test_train_register_anchors_exactly_what_was_written_on_the_in_process_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "run"
    code = main(
        [
            "--rpc-url",
            "memory",
            "--json",
            "train",
            "--out",
            str(out_dir),
            "--epochs",
            "2",
            "--quiet",
            "--register",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK
    card = json.loads((out_dir / "model_card.json").read_text())
    record = result["registration"]["record"]
    assert record["digest"] == str(digest_file(out_dir / "model.safetensors"))
    assert record["digest"] == f"sha256:{card['checkpoint']['sha256']}"
    assert record["card_digest"] == str(digest_file(out_dir / "model_card.json"))
    assert record["accuracy_bps"] == card["evaluation"]["accuracy_bps"]
    assert record["test_set_digest"] == f"sha256:{card['evaluation']['test_set_sha256']}"
    assert record["parent"] is None and record["valid"]
    assert result["stand_in_dataset"] is True


@pytest.mark.anvil
def test_trained_and_registered_checkpoint_verifies_and_its_child_names_it(
    anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGISTRY_PRIVATE_KEY", anvil.keys[0])
    chain = ["--rpc-url", anvil.endpoint, "--contract", anvil.client.address]
    first, second = tmp_path / "v1", tmp_path / "v2"
    assert (
        main([*chain, "train", "--out", str(first), "--epochs", "1", "--quiet", "--register"])
        == EXIT_OK
    )
    parent = str(digest_file(first / "model.safetensors"))
    assert (
        main(
            [
                *chain,
                "train",
                "--out",
                str(second),
                "--epochs",
                "1",
                "--seed",
                "1",
                "--quiet",
                "--register",
                "--parent",
                parent,
            ]
        )
        == EXIT_OK
    )
    capsys.readouterr()
    assert main([*chain, "--json", "verify", str(second / "model.safetensors")]) == EXIT_OK
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["record"]["parent"] == parent


def test_train_with_bad_data_path_is_a_usage_error(tmp_path: Path, capsys) -> None:
    code = main(
        ["train", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "o"), "--quiet"]
    )
    assert code == EXIT_USAGE
    assert "missing.npz" in capsys.readouterr().err


def test_train_register_without_a_reachable_chain_fails_after_writing_the_files(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    from registry.devnet import free_port

    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "data"))
    code = main(
        [
            "--rpc-url",
            f"http://127.0.0.1:{free_port()}",
            "--contract",
            "0x" + "11" * 20,
            "train",
            "--out",
            str(tmp_path / "o"),
            "--epochs",
            "1",
            "--quiet",
            "--register",
        ]
    )
    assert code == EXIT_FAILED
    assert "did not answer" in capsys.readouterr().err
    assert (tmp_path / "o" / "model.safetensors").exists()  # nothing lost: register again later
