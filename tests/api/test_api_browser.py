"""Browser hardening: every response tells the browser to load only this service's own files and
never to frame it, and a request another site's page sends without a key is refused."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from apikit import READER, REGISTRAR, Api, assert_error, make_card, make_checkpoint
from fastapi.testclient import TestClient

from registry.api.routes.web import STATIC_DIR

EXPECTED_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}
OCTETS = {"Content-Type": "application/octet-stream"}
CROSS_SITE = {"Sec-Fetch-Site": "cross-site", "Origin": "https://elsewhere.example"}


def assert_hardened(response: Any) -> None:
    for name, value in EXPECTED_HEADERS.items():
        assert response.headers.get_list(name) == [value], (name, response.headers)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/", {}, 200),
        ("GET", "/static/app.js", {}, 200),
        ("GET", "/static/style.css", {}, 200),
        ("GET", "/health", {}, 200),
        ("GET", "/openapi.json", {}, 200),
        ("GET", "/no-such-page", {}, 404),
        ("GET", "/static/no-such-file.js", {}, 404),
        ("DELETE", "/verify", {}, 405),
        ("POST", "/verify", {"content": b"", "headers": OCTETS}, 400),
        ("POST", "/verify", {"content": b"x", "headers": CROSS_SITE}, 403),
    ],
)
def test_every_response_carries_the_browser_headers(
    api: Api, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    response = api.http.request(method, path, **kwargs)

    assert response.status_code == status, response.text
    assert_hardened(response)


def test_a_500_carries_the_browser_headers(api: Api) -> None:
    def broken() -> Any:
        raise RuntimeError("a bug")

    api.http.app.state.services.client = broken  # type: ignore[attr-defined]
    http = TestClient(api.http.app, raise_server_exceptions=False)

    response = http.get("/models")

    assert_error(response, 500, "internal_error")
    assert_hardened(response)


def test_a_413_from_the_body_limit_carries_the_browser_headers(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(max_upload_bytes=10)

    response = api.http.post("/verify", content=b"x" * 11, headers=OCTETS)

    assert_error(response, 413, "payload_too_large")
    assert_hardened(response)


def _data_files(api: Api) -> dict[str, bytes]:
    """What requests write in the data dir. The event index (index.sqlite3 and its WAL) is left
    out: a background thread catches it up from the chain whenever it likes, whatever a request
    does."""
    root = api.settings.data_dir
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith("index.sqlite3")
    }


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://elsewhere.example"},
        {"Sec-Fetch-Site": "cross-site"},  # a browser that sent no Origin
        {"Origin": "https://elsewhere.example"},  # an older browser: no Sec-Fetch-Site
        {"Origin": "null"},  # a sandboxed frame or a data: URL
        {"Origin": "https://testserver"},  # same host, other scheme: another origin
        {"Origin": "http://testserver:8080"},  # same host, other port
    ],
)
def test_a_cross_site_verify_without_a_key_is_refused_and_writes_nothing(
    api: Api, headers: dict[str, str]
) -> None:
    checkpoint, digest = api.registered_model()
    before = _data_files(api)

    response = api.http.post("/verify", content=checkpoint, headers={**OCTETS, **headers})

    error = assert_error(response, 403, "cross_site_request")
    assert error["details"]["method"] == "POST"
    assert error["details"]["origin"] == headers.get("Origin")
    assert error["details"]["fetch_site"] == headers.get("Sec-Fetch-Site")
    assert "X-API-Key" in error["message"]
    assert response.headers["connection"] == "close"
    assert _data_files(api) == before
    # The same bytes from a script are verified and audited: the check above could fail.
    assert api.verify(checkpoint).json()["digest"] == digest
    assert api.audit_entries()[-1]["event"] == "verify"
    assert _data_files(api) != before


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, scripts, the CLI
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},  # the clinic page
        {"Origin": "http://testserver"},  # the page, in a browser without Sec-Fetch-Site
        {"Origin": "HTTP://TestServer:80"},  # the same origin, spelled differently
        {"Sec-Fetch-Site": "same-site", "Origin": "https://other.testserver"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
        {**CROSS_SITE, **READER},  # a script with a key (the route checks it)
    ],
)
def test_verify_from_the_own_page_a_script_or_with_a_key_is_served(
    api: Api, headers: dict[str, str]
) -> None:
    checkpoint, digest = api.registered_model()

    response = api.http.post("/verify", content=checkpoint, headers={**OCTETS, **headers})

    assert response.status_code == 200, response.text
    assert response.json()["verified"] is True and response.json()["digest"] == digest
    assert api.audit_entries()[-1]["event"] == "verify"


def test_a_cross_site_register_is_refused_without_a_key_and_served_with_one(api: Api) -> None:
    checkpoint = make_checkpoint(seed=7)
    files = {
        "checkpoint": ("model.safetensors", checkpoint, "application/octet-stream"),
        "card": ("model_card.json", make_card(checkpoint), "application/json"),
    }

    refused = api.http.post("/models", files=files, headers=CROSS_SITE)
    served = api.http.post("/models", files=files, headers={**CROSS_SITE, **REGISTRAR})

    assert_error(refused, 403, "cross_site_request")
    assert served.status_code == 201, served.text


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_every_state_changing_method_is_guarded(api: Api, method: str) -> None:
    # No route takes these methods; the refusal comes first, so it is a 403, not a 405.
    response = api.http.request(method, "/models", headers=CROSS_SITE)

    assert_error(response, 403, "cross_site_request")


def test_cross_site_reads_are_served(api: Api) -> None:
    response = api.http.get("/health", headers=CROSS_SITE)

    assert response.status_code == 200, response.text
    assert_hardened(response)


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_no_page_that_loads_cdn_scripts_is_served(api: Api, path: str) -> None:
    assert_error(api.http.get(path), 404)
    assert api.http.get("/openapi.json").status_code == 200


def _static(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def test_the_page_needs_nothing_the_policy_forbids() -> None:
    html = _static("index.html")
    scripts = re.findall(r"<script\b[^>]*>", html, flags=re.IGNORECASE)
    assert scripts and all(re.search(r'\bsrc="/static/[\w.-]+"', s) for s in scripts), scripts
    assert re.findall(r"<script\b[^>]*>\s*[^<\s]", html, flags=re.IGNORECASE) == []  # inline code
    assert re.findall(r"<style\b|\sstyle=|\son\w+=|javascript:", html, flags=re.IGNORECASE) == []
    external = re.compile(r"https?://|@import|\beval\(|new Function|\bsrc=\"//|\bhref=\"//")
    for path in Path(STATIC_DIR).iterdir():
        assert external.findall(path.read_text(encoding="utf-8")) == [], path.name


def test_a_cross_site_request_with_an_unknown_key_is_left_to_the_route_which_refuses_it(
    api: Api,
) -> None:
    response = api.http.post(
        "/verify", content=b"x", headers={**OCTETS, **CROSS_SITE, "X-API-Key": "not-a-key"}
    )

    assert_error(response, 401, "unauthenticated")
    assert_hardened(response)
