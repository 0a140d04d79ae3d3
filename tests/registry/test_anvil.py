"""The managed anvil node: start, persistence across restarts, the background service, failures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from registry.chain.connection import resolve_endpoint
from registry.config import Settings
from registry.core.nodeinfo import INFO_FILE, pid_alive
from registry.devnet import (
    DEV_ADDRESSES,
    DEV_PRIVATE_KEYS,
    ENV_ANVIL_BIN,
    LOG_FILE,
    STATE_FILE,
    AnvilNode,
    background_status,
    binary,
    find_anvil,
    free_port,
    json_rpc,
    start_background,
    stop_background,
)
from registry.errors import ChainError, ChainUnavailable, ConfigurationError

pytestmark = pytest.mark.anvil

ONE_ETH = 10**18
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def make_node() -> Iterator[Callable[..., AnvilNode]]:
    """Build AnvilNodes; every one is stopped after the test, whatever happened."""
    nodes: list[AnvilNode] = []

    def make(*args: Any, **kwargs: Any) -> AnvilNode:
        node = AnvilNode(*args, **kwargs)
        nodes.append(node)
        return node

    try:
        yield make
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
def bg_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory for the background node, stopped after the test."""
    directory = tmp_path / "chain"
    try:
        yield directory
    finally:
        stop_background(directory)


def send_eth(node_url: str, sender: str, to: str, value: int) -> str:
    """Send ETH from an unlocked dev account and wait until it is mined.

    Even with automine, anvil answers eth_sendTransaction before the block is mined (measured:
    about one call in five on a loaded machine), and a stop before mining loses the transaction.
    """
    tx_hash: str = json_rpc(
        node_url, "eth_sendTransaction", [{"from": sender, "to": to, "value": hex(value)}]
    )
    deadline = time.monotonic() + 10
    while json_rpc(node_url, "eth_getTransactionReceipt", [tx_hash]) is None:
        assert time.monotonic() < deadline, f"{tx_hash} was not mined within 10 s"
        time.sleep(0.02)
    return tx_hash


def balance(node_url: str, address: str) -> int:
    return int(json_rpc(node_url, "eth_getBalance", [address, "latest"]), 16)


def nonce(node_url: str, address: str) -> int:
    return int(json_rpc(node_url, "eth_getTransactionCount", [address, "latest"]), 16)


# --- finding the binary ----------------------------------------------------------------------


def test_find_anvil_prefers_the_platform_binary_from_node_modules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_ANVIL_BIN, raising=False)
    found = find_anvil()
    assert found == binary.platform_binary(PROJECT_ROOT)
    assert os.access(found, os.X_OK)


def test_find_anvil_raises_naming_the_override_path_when_it_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "no" / "anvil"
    monkeypatch.setenv(ENV_ANVIL_BIN, str(missing))
    with pytest.raises(ConfigurationError) as caught:
        find_anvil()
    assert str(missing) in caught.value.message
    assert caught.value.details["path"] == str(missing)
    with pytest.raises(ConfigurationError, match="does not exist"):
        AnvilNode().start()


def test_find_anvil_names_every_place_it_looked_and_says_npm_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(ENV_ANVIL_BIN, raising=False)
    monkeypatch.setattr(binary, "_PROJECT_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ConfigurationError) as caught:
        find_anvil()
    assert "npm ci" in caught.value.message
    searched = caught.value.details["searched"]
    assert str(binary.platform_binary(tmp_path)) in searched
    assert str(tmp_path / "node_modules/.bin/anvil") in searched
    assert all(place in caught.value.message for place in searched)


# --- JSON-RPC --------------------------------------------------------------------------------


def test_json_rpc_raises_chain_unavailable_when_nothing_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ChainUnavailable) as caught:
        json_rpc(url, "eth_chainId", timeout=1.0)
    assert caught.value.endpoint == url


# --- AnvilNode -------------------------------------------------------------------------------


def test_node_starts_on_a_free_port_and_answers_with_its_chain_id(
    make_node: Callable[..., AnvilNode],
) -> None:
    node = make_node(chain_id=1337)
    with node:
        assert node.running and node.pid is not None
        assert node.url == f"http://127.0.0.1:{node.port}"
        assert int(node.rpc("eth_chainId"), 16) == 1337
        accounts = node.rpc("eth_accounts")
        assert [a.lower() for a in accounts[:5]] == [a.lower() for a in DEV_ADDRESSES]
        scratch = node.log_path.parent
        assert scratch.is_dir()
    assert not node.running and node.pid is None
    assert not scratch.exists(), "an ephemeral node must clean up its temporary directory"


def test_dev_private_keys_control_the_dev_addresses() -> None:
    derived = [Account.from_key(key).address for key in DEV_PRIVATE_KEYS]
    assert derived == list(DEV_ADDRESSES)


def test_node_rpc_supports_test_methods_and_reports_rpc_errors(
    make_node: Callable[..., AnvilNode],
) -> None:
    with make_node() as node:
        snapshot = node.rpc("evm_snapshot")
        node.rpc("evm_mine")
        assert int(node.rpc("eth_blockNumber"), 16) == 1
        assert node.rpc("evm_revert", [snapshot]) is True
        assert int(node.rpc("eth_blockNumber"), 16) == 0
        with pytest.raises(ChainError) as caught:
            node.rpc("no_such_method")
        assert caught.value.details["method"] == "no_such_method"
        assert caught.value.details["rpc_error"]["code"] == -32601


def test_stop_then_start_with_the_same_state_keeps_a_sent_transaction(
    make_node: Callable[..., AnvilNode], tmp_path: Path
) -> None:
    sender, receiver = DEV_ADDRESSES[0], DEV_ADDRESSES[1]
    # No periodic dumps: what survives must have been written by the SIGTERM in stop().
    node = make_node(tmp_path, state_interval=None)
    with node:
        port = node.port
        tx_hash = send_eth(node.url, sender, receiver, 3 * ONE_ETH)
        before = {
            "sender": balance(node.url, sender),
            "receiver": balance(node.url, receiver),
            "nonce": nonce(node.url, sender),
            "block": int(node.rpc("eth_blockNumber"), 16),
        }
        assert not (tmp_path / STATE_FILE).exists()
    assert before["nonce"] == 1 and before["block"] == 1
    assert before["receiver"] == 10_003 * ONE_ETH
    assert (tmp_path / STATE_FILE).is_file()

    with node:
        assert node.port == port, "a restarted node keeps its URL"
        assert balance(node.url, sender) == before["sender"]
        assert balance(node.url, receiver) == before["receiver"]
        assert nonce(node.url, sender) == before["nonce"]
        assert int(node.rpc("eth_blockNumber"), 16) == before["block"]
        receipt = node.rpc("eth_getTransactionReceipt", [tx_hash])
        assert receipt is not None and receipt["status"] == "0x1"
    assert (tmp_path / (STATE_FILE + ".bak")).is_file()


def test_running_node_dumps_state_on_its_interval(
    make_node: Callable[..., AnvilNode], tmp_path: Path
) -> None:
    with make_node(tmp_path, state_interval=1) as node:
        node.rpc("evm_mine")
        node.rpc("evm_mine")
        deadline = time.monotonic() + 5
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                state = json.loads((tmp_path / STATE_FILE).read_text())
            except (OSError, ValueError):
                state = {}  # not written yet, or caught mid-write
            if state.get("best_block_number") in (2, "0x2"):
                break
            time.sleep(0.1)
        assert state.get("best_block_number") in (2, "0x2"), state.get("best_block_number")


def test_node_that_dies_at_start_raises_with_its_log_tail(
    make_node: Callable[..., AnvilNode], tmp_path: Path
) -> None:
    (tmp_path / STATE_FILE).write_text("[]")  # valid JSON, but not an anvil state
    node = make_node(tmp_path)
    with pytest.raises(ConfigurationError) as caught:
        node.start()
    assert "exited" in caught.value.message
    assert "failed to parse" in caught.value.details["log_tail"]
    # No check of the status itself: the npm launcher exits 0 even when anvil failed.
    assert caught.value.details["returncode"] is not None
    assert not node.running and node.pid is None


def test_node_that_never_answers_is_killed_after_the_start_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hung = tmp_path / "hung-anvil"
    hung.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 30\n")
    hung.chmod(0o755)
    node = AnvilNode(binary=hung, start_timeout=0.5)
    with pytest.raises(ChainUnavailable, match=r"still starting after 0\.5 s"):
        node.start()
    assert not node.running and node.pid is None
    assert not pid_alive(int(pid_file.read_text()))


def test_truncated_state_file_is_refused_with_the_backup_named(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text('{"block": {"number": ')
    (tmp_path / (STATE_FILE + ".bak")).write_text("{}")
    with pytest.raises(ConfigurationError) as caught:
        AnvilNode(tmp_path).start()
    assert str(tmp_path / (STATE_FILE + ".bak")) in caught.value.message
    assert caught.value.details["state_path"] == str(tmp_path / STATE_FILE)


def test_requested_port_that_is_taken_is_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ConfigurationError) as caught:
            AnvilNode(port=port).start()
    assert caught.value.details["port"] == port


# --- the background node ---------------------------------------------------------------------

_START_IN_CHILD = """
import json, sys
from registry.devnet import start_background
print(json.dumps(start_background(sys.argv[1], port=int(sys.argv[2]), chain_id=4242)))
"""


def test_background_node_outlives_its_starter_and_start_is_idempotent(bg_dir: Path) -> None:
    port = free_port()
    child = subprocess.run(
        [sys.executable, "-c", _START_IN_CHILD, str(bg_dir), str(port)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        cwd=PROJECT_ROOT,
    )
    first = json.loads(child.stdout)
    assert first["already_running"] is False
    assert first["url"] == f"http://127.0.0.1:{port}"
    assert json.loads((bg_dir / INFO_FILE).read_text())["pid"] == first["pid"]

    status = background_status(bg_dir)
    assert status is not None and status["answering"] and status["pid"] == first["pid"]
    # The library finds the node through the info file, without importing registry.devnet.
    assert resolve_endpoint(Settings(rpc_url=None, data_dir=bg_dir)) == first["url"]

    again = start_background(bg_dir, port=port, chain_id=4242)
    assert again["already_running"] is True and again["pid"] == first["pid"]

    with pytest.raises(ConfigurationError, match="already runs on port"):
        start_background(bg_dir, port=port, chain_id=1)
    with pytest.raises(ConfigurationError, match="background anvil"):
        AnvilNode(bg_dir, chain_id=4242).start()


def test_background_stop_saves_state_and_a_new_start_loads_it(bg_dir: Path) -> None:
    info = start_background(bg_dir, port=free_port())
    send_eth(info["url"], DEV_ADDRESSES[2], DEV_ADDRESSES[3], ONE_ETH)

    assert stop_background(bg_dir) is True
    assert background_status(bg_dir) is None
    assert not (bg_dir / INFO_FILE).exists()
    assert not pid_alive(info["pid"])
    assert stop_background(bg_dir) is False, "stopping a stopped node is a no-op"

    again = start_background(bg_dir, port=info["port"])
    assert again["already_running"] is False and again["pid"] != info["pid"]
    assert nonce(again["url"], DEV_ADDRESSES[2]) == 1
    assert balance(again["url"], DEV_ADDRESSES[3]) == 10_001 * ONE_ETH


def test_stale_pid_file_reads_as_stopped_and_is_cleaned_up(bg_dir: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    bg_dir.mkdir()
    stale = {"pid": gone.pid, "pgid": gone.pid, "port": 1, "url": "http://127.0.0.1:1",
             "chain_id": 31337, "state_path": str(bg_dir / STATE_FILE),
             "log_path": str(bg_dir / LOG_FILE)}  # fmt: skip
    (bg_dir / INFO_FILE).write_text(json.dumps(stale))

    assert background_status(bg_dir) is None
    with pytest.raises(ChainUnavailable, match="registry chain start"):
        resolve_endpoint(Settings(rpc_url=None, data_dir=bg_dir))
    assert stop_background(bg_dir) is False
    assert not (bg_dir / INFO_FILE).exists()
