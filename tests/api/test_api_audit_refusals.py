"""Refused requests leave a trace in the audit log, counted per window and bounded in a flood; an
operation that fails in any way is recorded with what happened (``registry.api.refusals``,
``Services.audited``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apikit import (
    API_KEYS,
    READER,
    READER_KEY,
    REGISTRAR,
    REVOKER,
    REVOKER_KEY,
    Api,
    assert_error,
    make_checkpoint,
    settings_for,
)
from fastapi.testclient import TestClient

from registry.api import create_app
from registry.api.auth import Caller, key_id
from registry.core.audit_chain import verify
from registry.core.audit_key import load_key
from registry.core.audit_refusals import MAX_KINDS
from registry.errors import NotFound

DIGEST = "sha256:" + "ab" * 32
JSON = {"Content-Type": "application/json"}

Serve = Callable[..., contextlib.AbstractContextManager[Api]]


@pytest.fixture
def serve(memory: Any, tmp_path: Path) -> Serve:
    """A service for the length of a with-block: its lifespan's end closes the open window."""
    count = iter(range(100))

    @contextlib.contextmanager
    def run(**overrides: Any) -> Iterator[Api]:
        settings = settings_for(tmp_path / f"data{next(count)}", **overrides)
        with TestClient(create_app(settings, client=memory.client)) as http:
            yield Api(http, memory, settings)
        key = load_key(settings.data_dir / "audit.key")
        assert verify(settings.data_dir / "audit.log", key).entries >= 1

    return run


def refused(api: Api) -> list[dict[str, Any]]:
    return [e for e in api.audit_entries() if e["event"] == "refused"]


def only_refusal(api: Api) -> dict[str, Any]:
    entries = refused(api)
    assert len(entries) == 1, entries
    return entries[0]


def test_a_register_without_a_key_is_recorded_once_its_window_closes(serve: Serve) -> None:
    with serve() as api:
        for _ in range(3):
            assert_error(api.http.post("/models", files={"checkpoint": b"x"}), 401)
        assert refused(api) == []  # counted, not yet written: one line per window
        assert api.http.app.state.services.refusals.pending == 3  # type: ignore[attr-defined]

    entry = only_refusal(api)
    assert (entry["outcome"], entry["status"], entry["count"]) == ("unauthenticated", 401, 3)
    assert (entry["who"], entry["route"]) == ("ip:testclient", "POST /models")
    assert entry["first"] <= entry["last"]


def test_a_register_with_a_reader_key_is_recorded_under_that_key(serve: Serve) -> None:
    with serve() as api:
        assert_error(api.http.post("/models", files={"checkpoint": b"x"}, headers=READER), 403)
    entry = only_refusal(api)
    assert (entry["outcome"], entry["who"]) == ("forbidden", key_id(READER_KEY))


def test_a_revoke_with_a_registrar_key_or_an_unknown_key_is_recorded(serve: Serve) -> None:
    unknown = {"X-API-Key": "not-a-configured-key-0123456789"}
    with serve() as api:
        route = f"/models/{DIGEST}/revoke"
        assert_error(api.http.post(route, json={"reason": "other"}, headers=REGISTRAR), 403)
        assert_error(api.http.post(route, json={"reason": "other"}, headers=unknown), 401)
    forbidden, unauthenticated = refused(api)
    assert forbidden["route"] == "POST /models/{digest}/revoke"  # the template, not the digest
    assert forbidden["who"] == key_id(REGISTRAR["X-API-Key"])
    assert (unauthenticated["outcome"], unauthenticated["who"]) == (
        "unauthenticated",
        "ip:testclient",
    )


def test_an_oversize_body_is_recorded_as_refused(serve: Serve) -> None:
    with serve(max_upload_bytes=1024) as api:
        response = api.http.post("/verify", content=b"x" * 4096)
        assert_error(response, 413, "payload_too_large")
    entry = only_refusal(api)
    assert (entry["status"], entry["route"], entry["who"]) == (413, "POST /verify", "ip:testclient")


def test_a_cross_site_post_is_recorded_as_refused(serve: Serve) -> None:
    with serve() as api:
        response = api.http.post("/verify", content=b"x", headers={"Sec-Fetch-Site": "cross-site"})
        assert_error(response, 403, "cross_site_request")
    entry = only_refusal(api)
    assert (entry["outcome"], entry["status"], entry["route"]) == (
        "cross_site_request",
        403,
        "POST /verify",
    )


def test_malformed_json_bodies_are_recorded_as_refused(serve: Serve) -> None:
    with serve() as api:
        predict = api.http.post(f"/models/{DIGEST}/predict", content=b'{"pixels": [', headers=JSON)
        assert_error(predict, 400, "invalid_input")
        revoke = api.http.post(
            f"/models/{DIGEST}/revoke", content=b'{"reason": ', headers={**JSON, **REVOKER}
        )
        assert_error(revoke, 422, "invalid_request")
    bad_pixels, bad_revoke = refused(api)
    assert (bad_pixels["status"], bad_pixels["route"]) == (400, "POST /models/{digest}/predict")
    assert (bad_revoke["outcome"], bad_revoke["who"]) == ("invalid_request", key_id(REVOKER_KEY))


def test_reads_without_a_key_are_recorded_when_keys_are_required(serve: Serve) -> None:
    with serve(require_key_for_reads=True) as api:
        assert_error(api.http.get("/models"), 401)
        assert api.http.get("/models", headers=READER).status_code == 200
    entry = only_refusal(api)
    assert (entry["route"], entry["count"]) == ("GET /models", 1)


def test_a_refusal_the_route_records_itself_is_not_counted_again(serve: Serve) -> None:
    with serve() as api:
        assert_error(api.verify(b"not a checkpoint"), 422, "invalid_checkpoint")
        assert_error(api.predict_png(DIGEST), 404)
        assert_error(api.http.get("/no-such-page"), 404)  # a wrong URL is not a refusal
    assert refused(api) == []
    assert [e["outcome"] for e in api.audit_entries()[1:]] == ["invalid_checkpoint", "not_found"]


def test_a_flood_of_500_refused_requests_grows_the_log_by_a_bounded_number_of_lines(
    serve: Serve,
) -> None:
    readers = [f"flood-reader-{i:04d}-0123456789" for i in range(100)]
    keys = ",".join([API_KEYS, *(f"{key}:reader" for key in readers)])
    with serve(api_keys=keys) as api:
        before = len(api.audit_entries())
        for i in range(500):
            headers = {"X-API-Key": readers[i % 100]} if i % 5 else {}
            response = api.http.post("/models", files={"checkpoint": b"x"}, headers=headers)
            assert response.status_code in (401, 403)
    entries = refused(api)
    assert len(api.audit_entries()) - before == len(entries) <= MAX_KINDS + 1
    assert sum(e["count"] for e in entries) == 500
    assert entries[-1]["who"] == "*"  # 101 callers: the ones past the bound share one entry


def test_an_operation_that_fails_with_a_bug_is_recorded_as_internal_error(api: Api) -> None:
    services = api.http.app.state.services  # type: ignore[attr-defined]
    caller = Caller("key:0badc0de")
    with (
        pytest.raises(RuntimeError),
        services.audited("predict", caller, digest=DIGEST) as entry,
    ):
        entry["outcome"] = "predicted"  # set before the answer existed
        raise RuntimeError("serialising the answer failed")
    assert api.audit_entries()[-1]["outcome"] == "internal_error"

    async def failing(error: BaseException) -> None:
        async with services.audited_async("predict", caller, digest=DIGEST) as entry:
            entry["outcome"] = "predicted"
            raise error

    for error, outcome in [
        (ValueError("a bug"), "internal_error"),
        (asyncio.CancelledError(), "cancelled"),
        (NotFound("gone"), "not_found"),
    ]:
        with pytest.raises(type(error)):
            asyncio.run(failing(error))
        last = api.audit_entries()[-1]
        assert (last["outcome"], last["who"], last["digest"]) == (outcome, caller.id, DIGEST)


def test_a_successful_operation_keeps_the_outcome_its_block_set(api: Api) -> None:
    checkpoint = make_checkpoint(3)
    assert api.register(checkpoint).status_code == 201
    assert api.audit_entries()[-1]["outcome"] == "registered"
    assert refused(api) == []
