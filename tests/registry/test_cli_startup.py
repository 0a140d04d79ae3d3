"""The `registry` command starts without the deep-learning stack unless it trains or predicts;
and `registry serve` refuses a start-up mistake in one line, before anything listens."""

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.api.auth import KeyRing
from registry.errors import ConfigurationError


def test_registry_commands_other_than_train_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from registry.cli import build_parser, main\n"
        "build_parser()\n"
        "main(['hash', 'README.md'])\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"


# --- API keys ---------------------------------------------------------------------------------

SECRET = "päßwort-päßwort-päßwort"


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (f"{'a' * 20}:reader,{SECRET}:registrar", "entry 2: character 2 of the key is not"),
        ("k" * 10 + "\u00a0" + "k" * 10 + ":reader", "entry 1: character 11 of the key is not"),
        ("k" * 20 + "\x7f:reader", "entry 1: character 21 of the key is not"),
    ],
)
def test_a_key_no_http_header_can_carry_is_refused_naming_its_entry_never_the_key(
    spec: str, says: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        KeyRing.parse(spec)
    assert says in info.value.message and "printable ASCII" in info.value.message
    assert SECRET not in info.value.message and "\u00a0" not in info.value.message
    assert "\n" not in info.value.message


def test_printable_ascii_keys_with_any_punctuation_are_taken() -> None:
    ring = KeyRing.parse("a-b_c.d~e!f@g#h$i%j^k&l*m(n)o:reader, sp ace in the key here:registrar")
    assert ring.lookup("a-b_c.d~e!f@g#h$i%j^k&l*m(n)o") is not None
    assert ring.lookup("sp ace in the key here") is not None


# --- registry serve: one line, no listener ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def serve(tmp_path: Path, workers: int, **env: str) -> tuple[subprocess.CompletedProcess[str], int]:
    port = int(env.pop("REGISTRY_PORT", free_port()))
    environ = {
        **os.environ,
        # A chain nobody answers: the service would still start (and 503), so any refusal
        # below comes from the start-up check.
        "REGISTRY_RPC_URL": "http://127.0.0.1:9",
        "REGISTRY_DATA_DIR": str(tmp_path / "data"),
        "REGISTRY_PORT": str(port),
        "REGISTRY_API_KEYS": "k" * 24 + ":registrar",
        **env,
    }
    command = [sys.executable, "-m", "registry.cli", "serve", "--workers", str(workers)]
    done = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=120)
    return done, port


def assert_refused_in_one_line(done: subprocess.CompletedProcess[str], says: str) -> None:
    assert done.returncode != 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and says in lines[0], lines[0]
    assert done.stdout == ""


def assert_nothing_listens(port: int) -> None:
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 5):
        pass


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_with_a_short_api_key_exits_with_one_line_before_binding(
    tmp_path: Path, workers: int
) -> None:
    done, port = serve(tmp_path, workers, REGISTRY_API_KEYS="short:registrar")
    assert_refused_in_one_line(done, "REGISTRY_API_KEYS entry 1")
    assert_nothing_listens(port)


def test_serve_with_a_non_ascii_api_key_exits_with_one_line_naming_its_entry(
    tmp_path: Path,
) -> None:
    done, port = serve(tmp_path, 2, REGISTRY_API_KEYS=f"{'r' * 20}:reader,{SECRET}:registrar")
    assert_refused_in_one_line(done, "REGISTRY_API_KEYS entry 2")
    assert SECRET not in done.stderr
    assert_nothing_listens(port)


def test_serve_on_a_port_in_use_exits_with_one_line(tmp_path: Path, held_port: int) -> None:
    done, _ = serve(tmp_path, 2, REGISTRY_PORT=str(held_port))
    assert_refused_in_one_line(done, f"cannot listen on 127.0.0.1:{held_port}")


def test_serve_with_a_data_dir_that_cannot_be_one_exits_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    done, port = serve(tmp_path, 2, REGISTRY_DATA_DIR=str(tmp_path / "a-file" / "data"))
    assert_refused_in_one_line(done, "the data directory")
    assert_nothing_listens(port)


def test_serve_with_an_audit_key_others_may_read_exits_with_one_line(tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)
    done, port = serve(tmp_path, 2, REGISTRY_AUDIT_KEY_FILE=str(key))
    assert_refused_in_one_line(done, str(key))
    assert_nothing_listens(port)


def test_serve_with_a_bad_setting_exits_with_one_line(tmp_path: Path) -> None:
    done, _ = serve(tmp_path, 2, REGISTRY_TRUSTED_REGISTRANTS="0x" + "Ab" * 20)
    assert_refused_in_one_line(done, "REGISTRY_TRUSTED_REGISTRANTS")
