"""Nothing secret leaves the clinic service, and only a configured proxy names the caller.

A hosted RPC URL carries its credentials (``user:password@``, a key in the path, ``?apikey=``):
``/health`` and every 503 name the node as ``scheme://host:port`` only. Error bodies name no path
on the server's disk. ``X-Forwarded-For`` picks the identity the audit log records only when the
peer is listed in ``REGISTRY_TRUSTED_PROXIES``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apikit import API_KEYS, Api, assert_error, digest_of, settings_for
from fastapi.testclient import TestClient

from registry.api import create_app
from registry.api.disclosure import public_error
from registry.api.server import uvicorn_options
from registry.config import Settings
from registry.core.endpoint import UNPARSEABLE, redact_endpoint
from registry.core.store import FileStore
from registry.errors import AuditLogUnavailable, ConfigurationError, StoreError

SECRETS = ("alice-rpc-user", "s3cret-pass", "PATHKEY-0c9d", "QUERYKEY-77ab", "apikey")


def _secret_url(port: int) -> str:
    return (
        f"http://alice-rpc-user:s3cret-pass@127.0.0.1:{port}/v3/PATHKEY-0c9d?apikey=QUERYKEY-77ab"
    )


def _assert_no_secret(text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, (leaked, text)


# --- redact_endpoint ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("memory", "memory"),
        ("https://user:secret@rpc.example/v3/KEY?apikey=K#frag", "https://rpc.example"),
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("HTTPS://Key@RPC.Example:8443/path", "https://rpc.example:8443"),
        ("http://[::1]:8545/v3/KEY", "http://[::1]:8545"),
        ("http://u:p@[2001:db8::7]/KEY", "http://[2001:db8::7]"),
        ("http://rpc.example:99999/KEY", UNPARSEABLE),  # port out of range
        ("http://rpc.example:KEY/v3", UNPARSEABLE),  # not a port: maybe a key
        ("rpc.example/KEY", UNPARSEABLE),  # no scheme: could be anything
        ("", UNPARSEABLE),
    ],
)
def test_redact_endpoint_keeps_only_scheme_host_and_port(url: str, shown: str) -> None:
    assert redact_endpoint(url) == shown


# --- the RPC URL's credentials ---------------------------------------------------------------------


def _dead_port() -> int:
    from registry.devnet import free_port

    return int(free_port())


@pytest.mark.parametrize("contract_address", [None, "0x" + "12" * 20])
def test_health_and_a_503_name_the_node_without_its_credentials(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, contract_address: str | None
) -> None:
    # Without a contract address the service asks the node its chain id while connecting; with
    # one it connects at once and its client's first request fails: both ways out are covered.
    port = _dead_port()
    settings = settings_for(
        tmp_path / "data",
        rpc_url=_secret_url(port),
        contract_address=contract_address,
        request_timeout_s=1.0,
    )
    caplog.set_level(logging.INFO)
    with TestClient(create_app(settings)) as http:
        health = http.get("/health")
        listing = http.get("/models")
        verify = http.post("/verify", content=b"\0" * 64, headers={"Content-Type": "x/y"})

    assert health.status_code == 503, health.text
    body = health.json()
    assert body["endpoint"] == f"http://127.0.0.1:{port}"
    assert body["error"]["code"] == "chain_unavailable"
    assert f"http://127.0.0.1:{port}" in body["error"]["message"]
    _assert_no_secret(health.text)
    error = assert_error(listing, 503, "chain_unavailable")
    assert error["details"]["endpoint"] == f"http://127.0.0.1:{port}"
    _assert_no_secret(listing.text)
    _assert_no_secret(verify.text)
    _assert_no_secret(caplog.text)  # the start-up warning names the node too


def test_a_reconnected_client_names_the_new_node_without_its_credentials(
    memory: Any, tmp_path: Path
) -> None:
    from registry.chain.connection import make_web3

    client = memory.other(0)
    port = _dead_port()
    with TestClient(create_app(settings_for(tmp_path / "data"), client=client)) as http:
        client.reconnect(make_web3(_secret_url(port), 1.0), _secret_url(port))
        health = http.get("/health")
        listing = http.get("/models")

    assert health.status_code == 503
    assert health.json()["endpoint"] == f"http://127.0.0.1:{port}"
    assert client.endpoint == f"http://127.0.0.1:{port}"
    assert_error(listing, 503, "chain_unavailable")
    _assert_no_secret(health.text + listing.text)


# --- paths on the server's disk --------------------------------------------------------------------


def test_a_corrupted_store_object_is_a_500_that_names_the_digest_but_no_path(
    make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture
) -> None:
    api = make_api()
    checkpoint, digest = api.registered_model(seed=3)
    stored = api.settings.data_dir / "store" / "checkpoint" / digest[7:9] / digest[9:]
    stored.chmod(0o644)
    stored.write_bytes(checkpoint[:-1] + bytes([checkpoint[-1] ^ 1]))
    caplog.set_level(logging.ERROR, logger="registry.api")

    response = api.http.get(f"/models/{digest}/checkpoint")

    error = assert_error(response, 500, "store_error")
    assert digest[7:19] in error["message"] and "corrupted" in error["message"]
    assert error["details"]["digest"] == digest[7:]
    data_dir = str(api.settings.data_dir)
    assert data_dir not in response.text and os.sep + "store" not in response.text
    assert str(stored) in caplog.text  # the operator still finds the file in the service log


def test_a_store_read_failure_keeps_the_os_errors_path_out_of_the_body(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    digest = digest_of(b"x")[7:]
    (tmp_path / "store" / "checkpoint" / digest[:2] / digest[2:]).mkdir(parents=True)
    with pytest.raises(StoreError) as caught:
        store.get(digest, "checkpoint")  # a directory where the file should be: EISDIR
    assert str(tmp_path) in caught.value.message  # the operator's message names it

    public = public_error(caught.value)

    assert public["code"] == "store_error" and digest[:12] in public["message"]
    assert str(tmp_path) not in json.dumps(public)


@pytest.mark.parametrize(
    "exc",
    [
        ConfigurationError("keystore file /srv/keys/clinic.json does not exist", path="/srv/keys"),
        AuditLogUnavailable("/srv/registry/audit.log", "writing failed ([Errno 28] No space)"),
    ],
)
def test_configuration_and_audit_log_errors_keep_server_paths_out_of_the_body(
    exc: Any,
) -> None:
    public = public_error(exc)

    assert public["code"] == exc.code and public["message"]
    assert "/srv" not in json.dumps(public)


def test_a_store_miss_names_the_digest_but_not_the_store(tmp_path: Path) -> None:
    from registry.errors import NotFound

    digest = digest_of(b"y")[7:]
    with pytest.raises(NotFound) as caught:
        FileStore(tmp_path / "store").get(digest, "card")

    public = public_error(caught.value)

    assert digest in public["message"] and public["details"]["digest"] == digest
    assert str(tmp_path) not in json.dumps(public)


# --- who the audit log records ---------------------------------------------------------------------


def test_uvicorn_reads_proxy_headers_only_from_the_configured_proxies(tmp_path: Path) -> None:
    default = uvicorn_options(Settings(data_dir=tmp_path))
    behind = uvicorn_options(
        Settings(data_dir=tmp_path, trusted_proxies="10.0.0.5, 192.168.1.0/24")  # type: ignore[arg-type]
    )

    assert default["proxy_headers"] is False
    assert behind["proxy_headers"] is True
    assert behind["forwarded_allow_ips"] == ["10.0.0.5/32", "192.168.1.0/24"]


def test_a_trusted_proxy_that_is_not_an_address_is_refused_at_start_up() -> None:
    from registry.config import get_settings

    with pytest.raises(ConfigurationError, match=r"REGISTRY_TRUSTED_PROXIES.*proxy\.example"):
        get_settings(trusted_proxies="10.0.0.5,proxy.example")


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., tuple[str, Path]]]:
    """Start a real ``python -m registry.api.server`` (uvicorn applies the proxy settings)."""
    from registry.devnet import start_service

    started: list[Any] = []

    def start(**env: str) -> tuple[str, Path]:
        root = tmp_path_factory.mktemp("proxied")
        settings_env = {
            "REGISTRY_RPC_URL": "memory",
            "REGISTRY_DATA_DIR": str(root / "data"),
            "REGISTRY_API_KEYS": API_KEYS,
            **env,
        }
        service = start_service(settings_env, workers=1, log_path=root / "server.log")
        started.append(service.__enter__())
        return service.url, root / "data" / "audit.log"

    yield start
    for service in reversed(started):
        service.__exit__(None, None, None)


def _recorded_caller(base: str, audit: Path) -> str:
    response = httpx.post(
        f"{base}/verify",
        content=b"not a checkpoint",
        headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
        timeout=10,
        trust_env=False,
    )
    assert_error(response, 422, "invalid_checkpoint")
    entry = json.loads(audit.read_text().splitlines()[-1])
    assert entry["event"] == "verify" and entry["outcome"] == "invalid_checkpoint"
    return str(entry["who"])


@pytest.mark.parametrize(
    ("trusted", "who"),
    [
        (None, "ip:127.0.0.1"),  # the default: a local caller cannot choose its identity
        ("127.0.0.1", "ip:203.0.113.7"),
        ("10.0.0.0/8, 127.0.0.0/8", "ip:203.0.113.7"),
    ],
)
def test_forwarded_for_names_the_caller_only_from_a_trusted_proxy(
    serve: Callable[..., tuple[str, Path]], trusted: str | None, who: str
) -> None:
    env = {"REGISTRY_TRUSTED_PROXIES": trusted} if trusted is not None else {}
    base, audit = serve(**env)

    assert _recorded_caller(base, audit) == who
