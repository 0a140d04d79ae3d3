"""DNS rebinding: the service answers only to its own host names (``REGISTRY_ALLOWED_HOSTS``)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from apikit import Api, assert_error, settings_for
from fastapi.testclient import TestClient
from test_api_browser import assert_hardened

from registry.api import create_app
from registry.api.hosts import AllowedHosts
from registry.config import Settings, get_settings
from registry.errors import ConfigurationError

REBOUND = "rebind.attacker.example"


def _hosts(**values: object) -> AllowedHosts:
    return AllowedHosts.from_settings(Settings(**values))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "header",
    ["127.0.0.1:8000", "127.0.0.1", "localhost:8000", "LOCALHOST", "localhost.", "[::1]:8000"],
)
def test_by_default_the_loopback_names_pass(header: str) -> None:
    assert _hosts(host="127.0.0.1").allows(header)


@pytest.mark.parametrize(
    "header",
    [
        REBOUND,
        f"{REBOUND}:8000",
        "127.0.0.1.attacker.example",  # a name that starts like an address is still a name
        "localhost.attacker.example",
        "10.0.0.5:8000",  # an address the service is not bound to
        "",
        "a b",
        "localhost:8000/x",
        "user@localhost",
    ],
)
def test_by_default_other_names_and_malformed_hosts_are_refused(header: str) -> None:
    assert not _hosts(host="127.0.0.1").allows(header)


def test_the_bind_host_is_allowed_by_default() -> None:
    hosts = _hosts(host="clinic-gpu-3.internal")

    assert hosts.allows("clinic-gpu-3.internal:8000")
    assert not hosts.allows("clinic-gpu-4.internal:8000")


def test_bound_to_every_interface_any_address_and_the_machine_names_pass() -> None:
    hosts = _hosts(host="0.0.0.0")

    assert hosts.allows("10.0.0.5:8000")
    assert hosts.allows("[fe80::1]:8000")
    assert hosts.allows(socket.gethostname())
    assert not hosts.allows(f"{REBOUND}:8000")


def test_a_configured_list_replaces_the_defaults() -> None:
    hosts = _hosts(host="127.0.0.1", allowed_hosts="clinic.example, .radiology.example.org")

    assert hosts.allows("clinic.example")
    assert hosts.allows("CLINIC.example:443")
    assert hosts.allows("radiology.example.org")
    assert hosts.allows("pacs.radiology.example.org")
    assert not hosts.allows("evilradiology.example.org")  # a suffix, not a domain
    assert not hosts.allows("localhost")  # the list is the whole list


def test_a_star_lets_every_well_formed_name_pass() -> None:
    hosts = _hosts(allowed_hosts="*")

    assert hosts.allows(REBOUND)
    assert not hosts.allows("a b")


@pytest.mark.parametrize("entry", ["http://clinic.example", "clinic.example:8000", "a/b", "x y"])
def test_a_malformed_allowed_host_is_refused_at_start_up_by_name(entry: str) -> None:
    with pytest.raises(ConfigurationError, match="REGISTRY_ALLOWED_HOSTS") as caught:
        get_settings(allowed_hosts=entry)

    assert repr(entry) in str(caught.value)


def test_a_rebound_page_can_read_nothing(api: Api) -> None:
    checkpoint, digest = api.registered_model()
    rebound = {"Host": f"{REBOUND}:8000"}

    for path in ("/", "/health", "/models", f"/models/{digest}", f"/models/{digest}/checkpoint"):
        response = api.http.get(path, headers=rebound)
        error = assert_error(response, 400, "host_not_allowed")
        assert error["details"]["host"] == f"{REBOUND}:8000"
        assert "REGISTRY_ALLOWED_HOSTS" in error["message"]
        assert_hardened(response)
    # Writes and verifications too, before their body is read.
    posted = api.http.post(
        "/verify", content=checkpoint, headers={**rebound, "Content-Type": "x/y"}
    )
    assert_error(posted, 400, "host_not_allowed")
    # The same requests with the service's own name are answered.
    assert api.http.get(f"/models/{digest}/checkpoint").content == checkpoint


def test_the_defaults_serve_loopback_names_and_refuse_others(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data", allowed_hosts=[], host="127.0.0.1")
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as http:
        assert http.get("/health").status_code == 200
        assert http.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
        assert_error(http.get("/health", headers={"Host": REBOUND}), 400, "host_not_allowed")
        # TestClient's own default name is not one of the service's.
        assert_error(http.get("http://testserver/health"), 400, "host_not_allowed")


def test_each_app_answers_to_its_own_list(make_api: Callable[..., Api]) -> None:
    api = make_api(allowed_hosts=["clinic.example"])

    assert_error(api.http.get("/health"), 400, "host_not_allowed")  # testserver
    assert api.http.get("/health", headers={"Host": "clinic.example"}).status_code == 200
