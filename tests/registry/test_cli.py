"""The `registry` command end to end against a managed anvil it starts itself.

One managed node per module (``registry chain start`` in a temporary data dir on a free port);
every command runs in-process through ``main(argv)`` with settings from the environment, exactly
as a user's shell would provide them. The checks of ``registry register`` that refuse before the
chain is reached run on the in-process chain (``--rpc-url memory``) and need no node.
Checkpoints are real LeNet safetensors files with their canonical model cards (``apikit``).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from apikit import make_card, make_checkpoint

from registry.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from registry.core.digest import digest_bytes, digest_file

TEST_SPLIT = str(digest_bytes(b"test split"))
OTHER_SPLIT = str(digest_bytes(b"another test split"))
MEMORY = ("--rpc-url", "memory")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    code, out, _ = run(capsys, "--json", *argv)
    return code, json.loads(out)


@pytest.fixture(scope="module")
def chain_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from registry.devnet import DEV_PRIVATE_KEYS, free_port, stop_background

    data_dir = tmp_path_factory.mktemp("registry-data")
    env = {
        "REGISTRY_DATA_DIR": str(data_dir),
        "REGISTRY_PRIVATE_KEY": DEV_PRIVATE_KEYS[0],
        "PORT": str(free_port()),
    }
    yield env
    stop_background(data_dir)


@pytest.fixture
def cli_env(chain_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("REGISTRY_RPC_URL", "REGISTRY_CONTRACT_ADDRESS", "REGISTRY_CHAIN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGISTRY_DATA_DIR", chain_env["REGISTRY_DATA_DIR"])
    monkeypatch.setenv("REGISTRY_PRIVATE_KEY", chain_env["REGISTRY_PRIVATE_KEY"])
    return chain_env


@pytest.fixture
def deployed(cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """A running managed chain with a recorded deployment (started once, reused)."""
    data_dir = Path(cli_env["REGISTRY_DATA_DIR"])
    code, _, _ = run(capsys, "chain", "status")
    if code != EXIT_OK:
        code, out, err = run(capsys, "chain", "start", "--port", cli_env["PORT"])
        assert code == EXIT_OK, err
    if not (data_dir / "deployments").exists():
        code, out, err = run(capsys, "deploy", "--grant-self")
        assert code == EXIT_OK, err
        assert "registry deployed at 0x" in out
    return cli_env


def write_checkpoint(
    tmp_path: Path, seed: int, *, accuracy_bps: int = 9731, test_set_digest: str = TEST_SPLIT
) -> Path:
    """A LeNet checkpoint (``seed`` makes it unique) with its model card beside it, as
    `registry train` leaves them; the card states ``accuracy_bps`` on ``test_set_digest``."""
    checkpoint = make_checkpoint(seed)
    path = tmp_path / "model.safetensors"
    path.write_bytes(checkpoint)
    card = make_card(checkpoint, accuracy_bps=accuracy_bps, test_set_digest=test_set_digest)
    (tmp_path / "model_card.json").write_bytes(card)
    return path


def register(capsys: pytest.CaptureFixture[str], path: Path, *extra: str) -> dict:
    code, result = run_json(
        capsys,
        "register",
        str(path),
        "--accuracy-bps",
        "9731",
        "--test-set-digest",
        TEST_SPLIT,
        *extra,
    )
    assert code == EXIT_OK, result
    assert isinstance(result, dict)
    return result


def test_hash_prints_the_digest_of_the_file_bytes(tmp_path: Path, capsys) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights")
    code, out, _ = run(capsys, "hash", str(path))
    assert code == EXIT_OK
    assert out.split()[0] == str(digest_bytes(b"weights"))


@pytest.mark.anvil
def test_register_then_verify_exits_zero_and_tampering_one_byte_exits_one(
    deployed, tmp_path: Path, capsys
) -> None:
    path = write_checkpoint(tmp_path, 1)
    result = register(capsys, path)
    assert result["record"]["accuracy_bps"] == 9731
    assert result["record"]["card_digest"] == str(digest_file(tmp_path / "model_card.json"))

    code, out, _ = run(capsys, "verify", str(path))
    assert code == EXIT_OK
    assert out.startswith("VERIFIED")

    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    code, out, _ = run(capsys, "verify", str(path))
    assert code == EXIT_FAILED
    assert "[unknown]" in out


@pytest.mark.anvil
def test_register_twice_reports_already_registered_identical(deployed, tmp_path, capsys) -> None:
    path = write_checkpoint(tmp_path, 2)
    first = register(capsys, path)
    again = register(capsys, path)
    assert not first["already_registered"]
    assert again["already_registered"]
    assert again["record"]["registration_tx"] == first["record"]["registration_tx"]


@pytest.mark.anvil
def test_revoked_checkpoint_is_not_verified_and_says_why(deployed, tmp_path, capsys) -> None:
    old = write_checkpoint(tmp_path, 3)
    old_digest = register(capsys, old)["record"]["digest"]
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    new = write_checkpoint(new_dir, 4)
    new_digest = register(capsys, new, "--parent", old_digest)["record"]["digest"]

    code, out, err = run(
        capsys, "revoke", old_digest, "--reason", "safety-issue", "--replacement", new_digest
    )
    assert code == EXIT_OK, err
    code, verdict = run_json(capsys, "verify", str(old))
    assert code == EXIT_FAILED
    assert verdict["reason"] == "revoked"
    assert verdict["record"]["revocation"]["reason"] == "safety-issue"
    assert verdict["record"]["revocation"]["replacement"] == new_digest
    code, out, _ = run(capsys, "verify", str(old))
    assert "revoked on" in out and "safety-issue" in out and new_digest in out

    code, shown = run_json(capsys, "show", new_digest)
    assert code == EXIT_OK
    assert shown["lineage"] == [new_digest, old_digest]
    code, shown = run_json(capsys, "show", old_digest)
    assert shown["children"] == [new_digest]

    code, events = run_json(capsys, "history", old_digest)
    assert [e["kind"] for e in events] == ["registered", "revoked"]
    code, valid = run_json(capsys, "list", "--valid")
    assert new_digest in [r["digest"] for r in valid]
    assert old_digest not in [r["digest"] for r in valid]


@pytest.mark.anvil
def test_policy_flags_refuse_a_model_below_minimum_accuracy(deployed, tmp_path, capsys) -> None:
    path = write_checkpoint(tmp_path, 5)
    register(capsys, path)
    code, verdict = run_json(capsys, "verify", str(path), "--min-accuracy-bps", "9900")
    assert code == EXIT_FAILED
    assert verdict["reason"] == "policy"
    assert "below the clinic's minimum" in verdict["policy_failures"][0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["verify", "/no/such/file"], "no such file"),
        (["revoke", "sha256:1234", "--reason", "other"], "not a SHA-256 digest"),
        (["revoke", "0x" + "ab" * 32, "--reason", "bored"], "unknown revocation reason"),
        (
            [
                "register",
                "README.md",
                "--accuracy-bps",
                "10001",
                "--test-set-digest",
                "ab" * 32,
                "--card-digest",
                "cd" * 32,
            ],
            "accuracy must be an integer number of basis points",
        ),
    ],
)
@pytest.mark.anvil
def test_bad_input_exits_two_with_a_message(deployed, capsys, argv, message) -> None:
    code, _, err = run(capsys, *argv)
    assert code == EXIT_USAGE
    assert err.startswith("error: ") and message in err


def test_usage_errors_exit_two(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["verify"])
    assert info.value.code == EXIT_USAGE


@pytest.mark.anvil
def test_wrong_chain_id_is_refused(deployed, tmp_path, capsys) -> None:
    path = write_checkpoint(tmp_path, 6)
    code, result = run_json(capsys, "verify", str(path), "--chain-id", "1")
    assert code == EXIT_USAGE  # no deployment recorded for chain 1: a configuration problem
    assert result["error"]["code"] == "configuration_error"
    address = json.loads(
        (Path(deployed["REGISTRY_DATA_DIR"]) / "deployments" / "31337.json").read_text()
    )["address"]
    code, result = run_json(capsys, "verify", str(path), "--chain-id", "1", "--contract", address)
    assert code == EXIT_FAILED
    assert result["error"]["code"] == "wrong_chain"
    assert result["error"]["details"] == {
        "expected": 1,
        "actual": 31337,
        "endpoint": result["error"]["details"]["endpoint"],
    }


def test_unreachable_chain_exits_one_with_chain_unavailable(tmp_path, capsys, monkeypatch) -> None:
    from registry.devnet import free_port

    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path))
    path = write_checkpoint(tmp_path, 7)
    url = f"http://127.0.0.1:{free_port()}"
    code, result = run_json(
        capsys, "verify", str(path), "--rpc-url", url, "--contract", "0x" + "11" * 20
    )
    assert code == EXIT_FAILED
    assert result["error"]["code"] == "chain_unavailable"


@pytest.mark.anvil
def test_managed_chain_keeps_every_record_across_stop_and_start(deployed, tmp_path, capsys) -> None:
    path = write_checkpoint(tmp_path, 8)
    digest = register(capsys, path)["record"]["digest"]
    assert run(capsys, "chain", "stop")[0] == EXIT_OK
    code, _, _ = run(capsys, "verify", str(path))
    assert code == EXIT_FAILED  # chain down: not verified, never "verified"
    assert run(capsys, "chain", "start", "--port", deployed["PORT"])[0] == EXIT_OK
    code, verdict = run_json(capsys, "verify", str(path))
    assert code == EXIT_OK
    assert verdict["digest"] == digest


@pytest.mark.anvil
def test_roles_and_admin_commands(deployed, capsys) -> None:
    from registry.devnet import DEV_ADDRESSES

    other = DEV_ADDRESSES[3]
    assert run(capsys, "roles", "show", "registrar", other)[0] == EXIT_FAILED
    assert run(capsys, "roles", "grant", "registrar", other)[0] == EXIT_OK
    assert run(capsys, "roles", "show", "registrar", other)[0] == EXIT_OK
    assert run(capsys, "roles", "remove", "registrar", other)[0] == EXIT_OK
    code, admin = run_json(capsys, "admin", "show")
    assert code == EXIT_OK and admin["pending_admin"] is None


# --- register: the checks it shares with POST /models (in-process chain, no node needed) --------


def test_register_refuses_a_pickle_with_exit_two_before_reaching_the_chain(
    tmp_path: Path, capsys
) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"conv1.weight": [0.0] * 16}, protocol=4))
    # Nothing listens on the discard port: a command that reached for the chain would exit 1.
    unreachable = ("--rpc-url", "http://127.0.0.1:9", "--contract", "0x" + "11" * 20)
    code, out, err = run(
        capsys,
        "--json",
        *unreachable,
        "register",
        str(path),
        "--accuracy-bps",
        "9000",
        "--test-set-digest",
        TEST_SPLIT,
        "--card-digest",
        "cd" * 32,
    )
    assert code == EXIT_USAGE
    assert json.loads(out)["error"]["code"] == "pickle_rejected"
    assert err.startswith("error: checkpoint refused: ") and "pickle" in err


@pytest.mark.parametrize(
    ("flag", "value", "card_value"),
    [("--accuracy-bps", "9000", "7581"), ("--test-set-digest", OTHER_SPLIT, TEST_SPLIT)],
)
def test_register_refuses_a_flag_that_contradicts_the_card_naming_both_values(
    tmp_path: Path, capsys, flag: str, value: str, card_value: str
) -> None:
    path = write_checkpoint(tmp_path, 31, accuracy_bps=7581)
    code, out, err = run(capsys, *MEMORY, "register", str(path), flag, value)
    assert code == EXIT_USAGE, out
    assert err.startswith("error: ")
    assert flag in err and value in err and card_value in err


def test_register_refuses_a_card_written_for_another_checkpoint(tmp_path: Path, capsys) -> None:
    path = write_checkpoint(tmp_path, 32)
    other = make_checkpoint(33)
    card = tmp_path / "other_card.json"
    card.write_bytes(make_card(other))
    code, result = run_json(capsys, *MEMORY, "register", str(path), "--card", str(card))
    assert code == EXIT_USAGE
    assert isinstance(result, dict)
    assert result["error"]["code"] == "invalid_model_card"
    assert result["error"]["details"] == {
        "card_checkpoint": str(digest_bytes(other)),
        "checkpoint": str(digest_file(path)),
    }


@pytest.mark.parametrize("where", ["--card", "beside the checkpoint"])
def test_register_with_a_card_alone_anchors_the_cards_accuracy_and_test_set(
    tmp_path: Path, capsys, where: str
) -> None:
    path = write_checkpoint(tmp_path, 34, accuracy_bps=7581, test_set_digest=OTHER_SPLIT)
    card = tmp_path / "model_card.json"
    extra: tuple[str, ...] = ()
    if where == "--card":
        card = card.rename(tmp_path / "elsewhere.json")
        extra = ("--card", str(card))
    code, result = run_json(capsys, *MEMORY, "register", str(path), *extra)
    assert code == EXIT_OK, result
    assert isinstance(result, dict)
    record = result["record"]
    assert record["digest"] == str(digest_file(path))
    assert (record["accuracy_bps"], record["test_set_digest"]) == (7581, OTHER_SPLIT)
    assert record["card_digest"] == str(digest_file(card))


def test_register_with_a_card_digest_needs_the_accuracy_flag(tmp_path: Path, capsys) -> None:
    path = write_checkpoint(tmp_path, 35)
    card_digest = ("--card-digest", str(digest_file(tmp_path / "model_card.json")))
    code, result = run_json(
        capsys, *MEMORY, "register", str(path), *card_digest, "--test-set-digest", TEST_SPLIT
    )
    assert code == EXIT_USAGE
    assert isinstance(result, dict)
    assert result["error"]["details"]["missing"] == ["accuracy_bps"]
    assert "--accuracy-bps" in result["error"]["message"]

    code, result = run_json(
        capsys,
        *MEMORY,
        "register",
        str(path),
        *card_digest,
        "--test-set-digest",
        TEST_SPLIT,
        "--accuracy-bps",
        "8800",
    )
    assert code == EXIT_OK, result
    assert isinstance(result, dict)
    assert result["record"]["accuracy_bps"] == 8800
