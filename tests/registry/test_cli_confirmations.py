"""``registry register`` / ``revoke`` with more than one confirmation on an automining anvil.

Such a node mines a block only when a transaction arrives, so after the command's own block no
further one comes by itself: the command must say so while it waits (progress on stderr, never
on stdout, at most one line per ``PROGRESS_EVERY_S``) and end, at its timeout, with a one-line
error and exit 1, not a silent two-minute wait or a traceback. A block mined meanwhile (here by
the test, as another transaction would) completes the wait.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from apikit import make_card, make_checkpoint

from registry.chain.transactions import PROGRESS_EVERY_S
from registry.cli import EXIT_FAILED, EXIT_OK, main
from registry.core.digest import digest_bytes
from registry.core.records import RegisterRequest, RevocationReason

pytestmark = pytest.mark.anvil

TIMEOUT_S = 4.0
WAITING = "waiting for 2 confirmations of 0x"
ON_DEMAND = "mines a block only when a transaction arrives"


@pytest.fixture
def cli_chain(anvil: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Flags and environment for a CLI that signs with the admin's key on the session's anvil,
    wants 2 confirmations and gives up after TIMEOUT_S."""
    for name in ("REGISTRY_RPC_URL", "REGISTRY_CONTRACT_ADDRESS", "REGISTRY_CHAIN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REGISTRY_PRIVATE_KEY", anvil.keys[0])
    monkeypatch.setenv("REGISTRY_TX_TIMEOUT_S", str(TIMEOUT_S))
    return ["--rpc-url", anvil.endpoint, "--contract", anvil.client.address, "--confirmations", "2"]


def checkpoint_files(tmp_path: Path, seed: int) -> Path:
    checkpoint = make_checkpoint(seed=seed)
    path = tmp_path / "model.safetensors"
    path.write_bytes(checkpoint)
    (tmp_path / "model_card.json").write_bytes(make_card(checkpoint))
    return path


def progress_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(WAITING)]


def test_register_shows_its_wait_on_stderr_then_fails_with_a_clear_error_at_the_timeout(
    cli_chain: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = checkpoint_files(tmp_path, seed=41)

    code = main(["--json", "register", str(path), *cli_chain])

    out, err = capsys.readouterr()
    assert code == EXIT_FAILED
    error = json.loads(out)["error"]  # stdout holds the one JSON answer, no progress
    assert error["code"] == "transaction_failed"
    problem = error["details"]["problem"]
    assert "1 of 2 confirmations" in problem and ON_DEMAND in problem
    lines = err.splitlines()
    waits = progress_lines(err)
    assert waits and "(1/2, mined in block " in waits[0]
    assert len(waits) <= 1 + TIMEOUT_S / PROGRESS_EVERY_S  # at most one line every few seconds
    assert lines[: len(waits)] == waits
    assert lines[len(waits) :] == [f"error: {error['message']}"]
    assert "Traceback" not in err


def test_revoke_shows_its_wait_and_names_the_automining_node_in_its_error(
    anvil: Any, cli_chain: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    digest = digest_bytes(b"a checkpoint to withdraw")
    anvil.client.register(
        RegisterRequest(digest, 9_000, digest_bytes(b"test split"), digest_bytes(b"card"))
    )

    code = main(["revoke", str(digest), "--reason", "safety-issue", *cli_chain])

    out, err = capsys.readouterr()
    assert code == EXIT_FAILED and out == ""
    assert progress_lines(err)
    assert err.splitlines()[-1].startswith("error: transaction 0x")
    assert "1 of 2 confirmations" in err.splitlines()[-1]
    # The revocation itself stands on chain; only its second confirmation never came.
    record = anvil.client.get(digest)
    assert record is not None and record.revocation is not None
    assert record.revocation.reason is RevocationReason.SAFETY_ISSUE


def test_register_completes_once_another_block_arrives_while_it_waits(
    anvil: Any,
    cli_chain: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REGISTRY_TX_TIMEOUT_S", "60")
    path = checkpoint_files(tmp_path, seed=42)
    result: list[int] = []
    command = threading.Thread(
        target=lambda: result.append(main(["--json", "register", str(path), *cli_chain]))
    )
    err = ""

    command.start()
    try:
        # The command reports the mined block at once and again every few seconds while the
        # chain stands still; a line lost between two reads of the capture comes back.
        while command.is_alive() and "(1/2, mined in block " not in err:
            err += capsys.readouterr().err
            command.join(0.05)
        anvil.mine(1)
    finally:
        command.join(30)

    out, rest = capsys.readouterr()
    err += rest
    assert result == [EXIT_OK]
    registered = json.loads(out)
    assert registered["record"]["digest"] == str(digest_bytes(path.read_bytes()))
    assert progress_lines(err) and "error" not in err
