"""A file that cannot be read is bad input: one line naming the path and what the system said.

``registry hash``, ``verify``, ``register`` and ``audit verify`` read the files a user names. Whatever goes wrong
there (EIO from a failing disk, EACCES, ENOENT, a directory) must end with ``error: ...`` on
stderr, exit 2 like any other bad input, and the error object on stdout with ``--json``; never a
traceback. The EIO is real: reading ``/proc/self/mem`` at offset 0 (the unmapped first page of the
reading process) fails with EIO in read(), after open() and the regular-file check succeeded.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from apikit import TEST_SET_DIGEST, make_card, make_checkpoint

from registry.cli import EXIT_USAGE, main

MEMORY = ("--rpc-url", "memory")
PROC_MEM = Path("/proc/self/mem")
EVIDENCE = ("--card-digest", TEST_SET_DIGEST, "--accuracy-bps", "9000")
EVIDENCE += ("--test-set-digest", TEST_SET_DIGEST)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def eio_file() -> Path:
    """A path whose open() succeeds and whose first read() fails with EIO."""
    try:
        with PROC_MEM.open("rb", buffering=0) as stream:
            stream.read(1)
    except FileNotFoundError:
        pytest.skip(f"{PROC_MEM} does not exist here (no Linux /proc)")
    except OSError as exc:
        if exc.errno == errno.EIO:
            return PROC_MEM
        pytest.skip(f"{PROC_MEM} fails with {exc!r} here, not EIO")
    pytest.skip(f"{PROC_MEM} is readable at offset 0 here, so it cannot stand in for EIO")


def _commands(path: Path, tmp_path: Path) -> dict[str, list[str]]:
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(make_checkpoint(seed=3))
    key = tmp_path / "audit.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    return {
        "hash": ["hash", str(path)],
        "verify": ["verify", str(path), *MEMORY],
        "register": ["register", str(path), *EVIDENCE, *MEMORY],
        "register-card": ["register", str(checkpoint), "--card", str(path), *MEMORY],
        "audit-verify": ["audit", "verify", str(path), "--key-file", str(key)],
    }


COMMANDS = ["hash", "verify", "register", "register-card", "audit-verify"]


@pytest.mark.parametrize("command", COMMANDS)
def test_an_io_error_while_reading_is_one_line_naming_the_path_and_exit_two(
    eio_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, out, err = run(capsys, *_commands(eio_file, tmp_path)[command])

    assert code == EXIT_USAGE and out == ""
    assert err.startswith(f"error: cannot read {eio_file}: Input/output error (EIO); ")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS)
def test_an_io_error_while_reading_gives_the_json_error_object(
    eio_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, out, err = run(capsys, "--json", *_commands(eio_file, tmp_path)[command])

    assert code == EXIT_USAGE
    error = json.loads(out)["error"]
    assert error["code"] == "invalid_input"
    assert error["details"] == {
        "path": str(eio_file),
        "errno": "EIO",
        "reason": "Input/output error",
    }
    assert err == f"error: {error['message']}\n"


def test_a_directory_named_as_the_file_gives_the_json_error_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--json", "verify", str(tmp_path), *MEMORY)

    assert code == EXIT_USAGE
    error = json.loads(out)["error"]
    assert error["code"] == "invalid_input"
    assert error["details"] == {"path": str(tmp_path), "kind": "directory"}


def test_a_missing_file_gives_the_json_error_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "gone.safetensors"

    code, out, err = run(capsys, "--json", "hash", str(missing))

    assert code == EXIT_USAGE
    assert json.loads(out)["error"]["code"] == "invalid_input"
    assert err == f"error: no such file: {missing}; check the path\n"


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads a file whatever its mode, so EACCES cannot happen"
)
@pytest.mark.parametrize("command", ["hash", "verify", "register-card"])
def test_a_file_without_read_permission_names_the_path_and_the_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    locked = tmp_path / "locked"
    locked.write_bytes(make_card(make_checkpoint(seed=3)))
    locked.chmod(0)

    code, out, err = run(capsys, "--json", *_commands(locked, tmp_path)[command])

    assert code == EXIT_USAGE
    error = json.loads(out)["error"]
    assert error["details"] == {"path": str(locked), "errno": "EACCES"}
    assert err == f"error: cannot open {locked}: Permission denied; check the path\n"
