"""The `registry` command end to end against a managed anvil it starts itself.

One managed node per module (``registry chain start`` in a temporary data dir on a free port);
every command runs in-process through ``main(argv)`` with settings from the environment, exactly
as a user's shell would provide them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from registry.core.digest import digest_bytes

pytestmark = pytest.mark.anvil


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


def write_checkpoint(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    (tmp_path / "model_card.json").write_text('{"name": "test card"}')
    return path


def register(capsys: pytest.CaptureFixture[str], path: Path, *extra: str) -> dict:
    code, result = run_json(
        capsys,
        "register",
        str(path),
        "--accuracy-bps",
        "9731",
        "--test-set-digest",
        str(digest_bytes(b"test split")),
        *extra,
    )
    assert code == EXIT_OK, result
    assert isinstance(result, dict)
    return result


def test_hash_prints_the_digest_of_the_file_bytes(tmp_path: Path, capsys) -> None:
    path = write_checkpoint(tmp_path, b"weights")
    code, out, _ = run(capsys, "hash", str(path))
    assert code == EXIT_OK
    assert out.split()[0] == str(digest_bytes(b"weights"))


def test_register_then_verify_exits_zero_and_tampering_one_byte_exits_one(
    deployed, tmp_path: Path, capsys
) -> None:
    path = write_checkpoint(tmp_path, b"checkpoint bytes for verify")
    result = register(capsys, path)
    assert result["record"]["accuracy_bps"] == 9731
    assert result["record"]["card_digest"] == str(digest_bytes(b'{"name": "test card"}'))

    code, out, _ = run(capsys, "verify", str(path))
    assert code == EXIT_OK
    assert out.startswith("VERIFIED")

    path.write_bytes(b"checkpoint bytes for verifY")
    code, out, _ = run(capsys, "verify", str(path))
    assert code == EXIT_FAILED
    assert "[unknown]" in out


def test_register_twice_reports_already_registered_identical(deployed, tmp_path, capsys) -> None:
    path = write_checkpoint(tmp_path, b"idempotent checkpoint")
    first = register(capsys, path)
    again = register(capsys, path)
    assert not first["already_registered"]
    assert again["already_registered"]
    assert again["record"]["registration_tx"] == first["record"]["registration_tx"]


def test_revoked_checkpoint_is_not_verified_and_says_why(deployed, tmp_path, capsys) -> None:
    old = write_checkpoint(tmp_path, b"old model")
    old_digest = register(capsys, old)["record"]["digest"]
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    new = write_checkpoint(new_dir, b"new model")
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


def test_policy_flags_refuse_a_model_below_minimum_accuracy(deployed, tmp_path, capsys) -> None:
    path = write_checkpoint(tmp_path, b"policy model")
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
def test_bad_input_exits_two_with_a_message(deployed, capsys, argv, message) -> None:
    code, _, err = run(capsys, *argv)
    assert code == EXIT_USAGE
    assert err.startswith("error: ") and message in err


def test_usage_errors_exit_two(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["verify"])
    assert info.value.code == EXIT_USAGE


def test_wrong_chain_id_is_refused(deployed, tmp_path, capsys) -> None:
    path = write_checkpoint(tmp_path, b"anything")
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
    path = write_checkpoint(tmp_path, b"x")
    url = f"http://127.0.0.1:{free_port()}"
    code, result = run_json(
        capsys, "verify", str(path), "--rpc-url", url, "--contract", "0x" + "11" * 20
    )
    assert code == EXIT_FAILED
    assert result["error"]["code"] == "chain_unavailable"


def test_managed_chain_keeps_every_record_across_stop_and_start(deployed, tmp_path, capsys) -> None:
    path = write_checkpoint(tmp_path, b"survives a restart")
    digest = register(capsys, path)["record"]["digest"]
    assert run(capsys, "chain", "stop")[0] == EXIT_OK
    code, _, _ = run(capsys, "verify", str(path))
    assert code == EXIT_FAILED  # chain down: not verified, never "verified"
    assert run(capsys, "chain", "start", "--port", deployed["PORT"])[0] == EXIT_OK
    code, verdict = run_json(capsys, "verify", str(path))
    assert code == EXIT_OK
    assert verdict["digest"] == digest


def test_roles_and_admin_commands(deployed, capsys) -> None:
    from registry.devnet import DEV_ADDRESSES

    other = DEV_ADDRESSES[3]
    assert run(capsys, "roles", "show", "registrar", other)[0] == EXIT_FAILED
    assert run(capsys, "roles", "grant", "registrar", other)[0] == EXIT_OK
    assert run(capsys, "roles", "show", "registrar", other)[0] == EXIT_OK
    assert run(capsys, "roles", "remove", "registrar", other)[0] == EXIT_OK
    code, admin = run_json(capsys, "admin", "show")
    assert code == EXIT_OK and admin["pending_admin"] is None
