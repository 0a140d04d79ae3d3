"""Fail closed when the chain cannot be asked, and recover on its own when it answers again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apikit import API_KEYS, REGISTRAR, Api, assert_error, deploy, png, settings_for
from fastapi.testclient import TestClient

from registry.api import create_app
from registry.chain.client import RegistryClient
from registry.chain.connection import make_web3
from registry.config import Settings


def _dead_endpoint() -> str:
    from registry.devnet import free_port

    return f"http://127.0.0.1:{free_port()}"


def test_a_dead_node_makes_every_chain_endpoint_503_and_no_inference_runs(
    memory: Any, tmp_path: Path
) -> None:
    # The app gets a client of its own (the session's is shared), signing with the admin's key.
    client: RegistryClient = memory.other(0)
    settings = settings_for(tmp_path / "data")
    with TestClient(create_app(settings, client=client)) as http:
        api = Api(http, memory, settings)
        checkpoint, digest = api.registered_model()
        assert api.predict_png(digest).status_code == 200  # loaded into the gate
        # Now point the client at a port where nothing listens (same contract, same key).
        dead = _dead_endpoint()
        client.reconnect(make_web3(dead, 1.0), dead)
        time.sleep(settings.validity_ttl_s + 0.05)
        _assert_closed(api, checkpoint, digest)


def _assert_closed(api: Api, checkpoint: bytes, digest: str) -> None:
    health = api.http.get("/health")
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "unavailable" and body["gate_open"] is False
    assert body["chain_reachable"] is False
    assert body["error"]["code"] == "chain_unavailable"
    assert health.headers["Retry-After"]
    assert_error(api.predict_png(digest), 503, "chain_unavailable")
    assert_error(api.verify(checkpoint), 503, "chain_unavailable")
    assert_error(api.http.get("/models"), 503, "chain_unavailable")
    assert_error(api.http.get(f"/models/{digest}"), 503, "chain_unavailable")
    assert_error(api.http.get(f"/models/{digest}/checkpoint"), 503, "chain_unavailable")
    outcomes = [e["outcome"] for e in api.audit_entries() if e["event"] == "predict"]
    assert outcomes[-1] == "chain_unavailable"


# --- a real node: stop it, start it again with its state -------------------------------------------


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Any]:
    devnet = pytest.importorskip("registry.devnet")
    try:
        devnet.find_anvil()
    except Exception as exc:  # ConfigurationError: not installed
        pytest.skip(f"anvil is not installed: {exc}")
    chain = devnet.AnvilNode(tmp_path / "chain")
    chain.start()
    try:
        yield chain
    finally:
        chain.stop()


def anvil_settings(url: str, data_dir: Path, **overrides: Any) -> Settings:
    address, key = deploy(url)
    values: dict[str, Any] = {
        "rpc_url": url,
        "contract_address": address,
        "private_key": key,
        "data_dir": data_dir,
        "api_keys": API_KEYS,
        "validity_ttl_s": 0.2,
        "request_timeout_s": 2.0,
        "identity_ttl_s": 0.5,
        # TestClient sends "Host: testserver"; live servers in tests are reached on loopback.
        "allowed_hosts": ["testserver", "localhost", "127.0.0.1", "::1"],
    }
    values.update(overrides)
    return Settings(**values)


def _until(condition: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


@pytest.mark.anvil
def test_stopping_the_node_closes_the_gate_and_restarting_it_reopens_it(
    node: Any, tmp_path: Path
) -> None:
    from apikit import make_card, make_checkpoint

    settings = anvil_settings(node.url, tmp_path / "data")
    with TestClient(create_app(settings)) as http:
        checkpoint = make_checkpoint(seed=40)
        files = {"checkpoint": ("m", checkpoint), "card": ("c", make_card(checkpoint))}
        registered = http.post("/models", files=files, headers=REGISTRAR)
        assert registered.status_code == 201, registered.text
        digest = registered.json()["record"]["digest"]
        image = [("images", ("x.png", png()))]
        assert http.post(f"/models/{digest}/predict", files=image).status_code == 200
        block_before = http.get("/health").json()["latest_block"]

        node.stop()
        time.sleep(settings.validity_ttl_s + 0.05)

        health = http.get("/health")
        assert health.status_code == 503, health.text
        assert health.json()["error"]["code"] == "chain_unavailable"
        assert health.json()["gate_open"] is False
        assert_error(http.post(f"/models/{digest}/predict", files=image), 503, "chain_unavailable")
        assert_error(
            http.post("/verify", content=checkpoint, headers={"Content-Type": "x/y"}),
            503,
            "chain_unavailable",
        )

        node.start()  # same port, same state file: the registration is still there

        assert _until(lambda: http.get("/health").status_code == 200)
        health = http.get("/health").json()
        assert health["gate_open"] is True and health["latest_block"] >= block_before
        answer = http.post(f"/models/{digest}/predict", files=image)
        assert answer.status_code == 200, answer.text
        assert answer.json()["provenance"]["model_digest"] == digest
        verdict = http.post("/verify", content=checkpoint, headers={"Content-Type": "x/y"})
        assert verdict.json()["verified"] is True


@pytest.mark.anvil
def test_a_service_started_while_the_node_is_down_answers_503_then_recovers(
    node: Any, tmp_path: Path
) -> None:
    settings = anvil_settings(node.url, tmp_path / "data")
    node.stop()

    with TestClient(create_app(settings)) as http:
        assert_error(http.get("/models"), 503, "chain_unavailable")
        assert http.get("/health").status_code == 503

        node.start()

        assert _until(lambda: http.get("/health").status_code == 200)
        assert http.get("/models").status_code == 200


@pytest.mark.anvil
def test_a_node_serving_another_chain_id_is_a_503_wrong_chain(node: Any, tmp_path: Path) -> None:
    settings = anvil_settings(node.url, tmp_path / "data", chain_id=1)
    with TestClient(create_app(settings)) as http:
        health = http.get("/health")
        assert health.status_code == 503
        assert health.json()["error"]["code"] == "wrong_chain"
        assert health.json()["chain_reachable"] is True
        assert health.json()["chain_id"] == 31337
        assert_error(http.post("/verify", content=b"\0" * 64), 422)  # bad input still 4xx
        assert_error(http.get("/models"), 503, "wrong_chain")


@pytest.mark.anvil
def test_an_address_without_our_contract_is_a_503_contract_mismatch(
    node: Any, tmp_path: Path
) -> None:
    settings = anvil_settings(node.url, tmp_path / "data")
    settings = settings.model_copy(update={"contract_address": "0x" + "12" * 20})
    with TestClient(create_app(settings)) as http:
        health = http.get("/health")
        assert health.status_code == 503
        assert health.json()["error"]["code"] == "contract_mismatch"
        assert_error(http.get("/models"), 503, "contract_mismatch")
