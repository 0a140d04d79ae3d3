"""Shared chain fixtures.

eth-tester: one chain per session with the registry deployed; every test runs inside a snapshot
that is reverted afterwards, so tests never see each other's transactions. anvil: one node per
session on a free loopback port, deployed with the first dev key, also snapshot/reverted per test
(``evm_snapshot`` / ``evm_revert``); those tests carry the ``anvil`` marker.

A ``Backend`` bundles what a test needs from either chain: the admin client (admin, registrar and
revoker), clients for other funded accounts, and a decoder for the events of a transaction.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import event_abi_to_log_topic
from hexbytes import HexBytes
from hypothesis import settings as hypothesis_settings

from registry.chain.client import RegistryClient
from registry.chain.connection import memory_client
from registry.core.records import Role
from registry.errors import RegistryError

# Property tests check what holds, never how fast: Hypothesis's default 200 ms deadline per example
# turns a loaded CI machine into failures. Every property test runs under this profile.
hypothesis_settings.register_profile("registry", deadline=None)
hypothesis_settings.load_profile("registry")

ZERO_ADDRESS = "0x" + "00" * 20

# Skip reasons that mean "a tool the project installs is missing" (anvil, chromium, a dev package).
# A developer may lack one; CI must not, so there such a skip is reported as a failure.
_MISSING_TOOL = ("not installed", "npm ci", "bootstrap", "could not import", "cannot be imported")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[Any, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if not (os.environ.get("CI") and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)
    if any(phrase in reason for phrase in _MISSING_TOOL):
        report.outcome = "failed"
        report.longrepr = f"CI has no excuse to skip: {reason}"


def reset_client_caches(client: RegistryClient) -> None:
    """What a client remembers about chain state that a snapshot revert makes wrong."""
    client.forget_chain_state()


@dataclass
class Backend:
    """One chain with the registry deployed, as the tests see it."""

    kind: str  # "memory" or "anvil"
    client: RegistryClient  # admin, registrar and revoker
    keys: list[str]  # private keys of funded accounts; keys[0] is the admin's
    endpoint: str
    snapshot: Callable[[], Any]
    revert: Callable[[Any], None]
    mine: Callable[[int], None]
    node: Any = None  # the AnvilNode, for anvil
    deployment: Any = None  # the Deployment record, for anvil
    _clients: list[RegistryClient] = field(default_factory=list)

    @property
    def admin(self) -> str:
        return self.client.account.address  # type: ignore[union-attr]

    def account(self, index: int) -> LocalAccount:
        acct: LocalAccount = Account.from_key(self.keys[index])
        return acct

    def address(self, index: int) -> str:
        return self.account(index).address

    def other(self, index: int, *roles: Role, **kwargs: Any) -> RegistryClient:
        """A client for the same contract signing with funded account ``index``, given ``roles``."""
        options: dict[str, Any] = {
            "address": self.client.address,
            "deployment_block": self.client.deployment_block,
            "expected_chain_id": self.client.expected_chain_id,
            "account": self.account(index) if index is not None else None,
            "endpoint": self.endpoint,
        }
        options.update(kwargs)
        # eth-tester is not thread-safe: clients of the one in-process chain (one provider) share
        # its lock by themselves.
        other = RegistryClient(self.client.w3, **options)
        for role in roles:
            self.client.grant_role(role, other.account.address)  # type: ignore[union-attr]
        self._clients.append(other)
        return other

    def reader(self, **kwargs: Any) -> RegistryClient:
        """A client with no signing key."""
        return self.other(None, account=None, **kwargs)  # type: ignore[arg-type]

    def events(self, tx_hash: str | bytes) -> list[tuple[str, dict[str, Any]]]:
        """Every log of the transaction, decoded with the ABI: (event name, arguments)."""
        w3 = self.client.w3
        receipt = w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        abi = self.client.artifact.abi
        by_topic = {
            HexBytes(event_abi_to_log_topic(e)): e["name"]  # type: ignore[arg-type]
            for e in abi
            if e["type"] == "event"
        }
        contract = w3.eth.contract(address=self.client.address, abi=abi)
        decoded = []
        for log in receipt["logs"]:
            assert log["address"] == self.client.address
            name = by_topic[HexBytes(log["topics"][0])]
            decoded.append((name, dict(contract.events[name]().process_log(log)["args"])))
        return decoded

    def timestamp(self, tx_hash: str | bytes) -> int:
        """The timestamp of the block that holds the transaction."""
        w3 = self.client.w3
        block = w3.eth.get_transaction_receipt(HexBytes(tx_hash))["blockNumber"]
        return int(w3.eth.get_block(block)["timestamp"])

    def _reset(self) -> None:
        for client in (self.client, *self._clients):
            reset_client_caches(client)
        self._clients.clear()


# --------------------------------------------------------------------------------------------
# eth-tester
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _memory_backend() -> Backend:
    client = memory_client()
    tester = client.eth_tester

    def mine(blocks: int) -> None:
        with client.serialised():
            tester.mine_blocks(blocks)

    return Backend(
        kind="memory",
        client=client,
        keys=[k.to_hex() for k in tester.backend.account_keys],
        endpoint="memory",
        snapshot=tester.take_snapshot,
        revert=tester.revert_to_snapshot,
        mine=mine,
    )


def _isolated(backend: Backend) -> Iterator[Backend]:
    snapshot = backend.snapshot()
    try:
        yield backend
    finally:
        backend.revert(snapshot)
        backend._reset()


@pytest.fixture
def memory(_memory_backend: Backend) -> Iterator[Backend]:
    """The session's eth-tester chain, reverted after the test."""
    yield from _isolated(_memory_backend)


# --------------------------------------------------------------------------------------------
# anvil
# --------------------------------------------------------------------------------------------


def _anvil_missing() -> str | None:
    """Why anvil cannot run here, or None when it can."""
    try:
        from registry.devnet import find_anvil
    except ImportError as exc:
        return f"registry.devnet cannot be imported ({exc})"
    try:
        find_anvil()
    except RegistryError as exc:
        return exc.message
    return None


def start_anvil(**options: Any) -> Any:
    """Start an AnvilNode (its port picked by the OS); skip the test when anvil is missing."""
    missing = _anvil_missing()
    if missing is not None:
        pytest.skip(missing)
    from registry.devnet import AnvilNode

    return AnvilNode(**options).start()


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[Any]:
    """An ephemeral anvil node on a free loopback port for the whole session, stopped at the end."""
    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def make_anvil_node() -> Iterator[Callable[..., Any]]:
    """Start extra anvil nodes (AnvilNode options) for one test; all are stopped after it."""
    nodes: list[Any] = []

    def make(**options: Any) -> Any:
        node = start_anvil(**options)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


def anvil_backend(node: Any) -> Backend:
    """Deploy the registry on ``node`` with dev key 0, which then holds every role."""
    from registry.chain.connection import make_web3
    from registry.chain.deploy import deploy_and_grant_self
    from registry.chain.keys import account_from_hex
    from registry.devnet import DEV_PRIVATE_KEYS

    w3 = make_web3(node.url, 10.0)
    account = account_from_hex(DEV_PRIVATE_KEYS[0], "anvil dev key 0")
    client, deployment = deploy_and_grant_self(w3, account, endpoint=node.url)

    def mine(blocks: int) -> None:
        for _ in range(blocks):
            node.rpc("evm_mine")

    def revert(snapshot: Any) -> None:
        assert node.rpc("evm_revert", [snapshot]) is True

    return Backend(
        kind="anvil",
        client=client,
        keys=list(DEV_PRIVATE_KEYS),
        endpoint=node.url,
        snapshot=lambda: node.rpc("evm_snapshot"),
        revert=revert,
        mine=mine,
        node=node,
        deployment=deployment,
    )


@pytest.fixture
def make_anvil_backend(make_anvil_node: Callable[..., Any]) -> Callable[..., Backend]:
    """A fresh anvil node per call (AnvilNode options) with the registry deployed on it; every
    node is stopped after the test. For tests that stop or reorganise their own chain."""
    return lambda **options: anvil_backend(make_anvil_node(**options))


@pytest.fixture(scope="session")
def _anvil_backend(anvil_node: Any) -> Backend:
    return anvil_backend(anvil_node)


@pytest.fixture
def anvil(_anvil_backend: Backend) -> Iterator[Backend]:
    """The session's anvil chain, reverted after the test."""
    yield from _isolated(_anvil_backend)


@pytest.fixture(
    params=["memory", pytest.param("anvil", marks=pytest.mark.anvil)],
)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each backend in turn, reverted after the test."""
    base = request.getfixturevalue(f"_{request.param}_backend")
    yield from _isolated(base)


# --------------------------------------------------------------------------------------------
# The HTTP service on the eth-tester chain (tests/api, tests/security)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def make_api(memory: Backend, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build an app on the session's eth-tester chain with settings overrides; closed after.

    Each app gets its own data directory (store, audit log) and the API keys of ``apikit``.
    """
    from apikit import Api, settings_for
    from fastapi.testclient import TestClient

    from registry.api import create_app

    opened: list[TestClient] = []

    def build(**overrides: Any) -> Api:
        settings = settings_for(tmp_path / f"data{len(opened)}", **overrides)
        http = TestClient(create_app(settings, client=memory.client))
        http.__enter__()
        opened.append(http)
        return Api(http, memory, settings)

    yield build
    for http in opened:
        http.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Callable[..., Any]) -> Any:
    return make_api()
