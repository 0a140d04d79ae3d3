"""Schemathesis against the service's own OpenAPI document: every operation, hundreds of requests.

Each operation gets ``SCHEMA_FUZZ_EXAMPLES`` generated requests (default 250 in the test run,
which holds over twenty operations; scripts/reliability_report.py sends 500): schema-valid and
schema-violating ones (schemathesis's positive and negative modes), sent with the registrar,
revoker or reader key, no key, a key nobody configured, or whatever header schemathesis drew. A
share of the valid requests is steered onto what random data never finds: the digests of a
stored valid checkpoint, a revoked one and one kept for revocation, real checkpoint bytes (good,
tampered, revoked), a checkpoint with its model card, and real PNG / JPEG / pixel-array images;
so the 200 / 201 / 403 / 409 answers are fuzzed too, not only the 400s.

Every answer must be documented for its operation, match the documented body schema, content type
and headers, never be a 5xx, and every error must be exactly ``{"error": {"code", "message",
"details"}}``; a request that violates the schema must be refused.

``SCHEMA_FUZZ_TRANSPORT=uvicorn`` sends the same requests over loopback to a real ``registry
serve`` (one worker, in-process chain) instead of the in-process ASGI transport.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apikit import (
    API_KEYS,
    READER_KEY,
    REGISTRAR_KEY,
    REVOKER_KEY,
    digest_of,
    jpeg,
    make_card,
    make_checkpoint,
    png,
    settings_for,
)

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.transport.serialization import Binary  # noqa: E402

from registry.api import create_app  # noqa: E402

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("SCHEMA_FUZZ_EXAMPLES", "250"))
TRANSPORT = os.environ.get("SCHEMA_FUZZ_TRANSPORT", "asgi")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
MAX_FAILURES = 10  # distinct kinds kept per operation; the run goes on after a failure
POSITIVE_CHECKS = [check for check in CHECKS if check is not negative_data_rejection]
# A 5xx that is the documented answer of this service's set-up, not a fault: the fuzzed service
# runs on eth-tester, which has no eth_getProof, so a proof bundle is 502 proofs_unsupported.
EXPECTED_5XX = {"GET /models/{digest}/proof": {502}}
# A request must never take this long; a hang is a failure, not a slow test.
REQUEST_TIMEOUT_S = 30.0
KEYS = {"registrar": REGISTRAR_KEY, "revoker": REVOKER_KEY, "reader": READER_KEY}


def _operation_labels() -> list[str]:
    """Every operation in the document, read from an app that is built but never started."""
    with tempfile.TemporaryDirectory() as scratch:
        document = create_app(settings_for(Path(scratch))).openapi()
    return sorted(
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method in operations
    )


OPERATIONS = _operation_labels()


@dataclass
class Fixtures:
    """What the steered requests use: digests and bytes in known states on the service's chain."""

    valid: bytes  # registered, stored, valid
    revoked: bytes  # registered, stored, revoked
    to_revoke: bytes  # registered, revoked by the fuzzed revoke operation (first 200, then 409)
    fresh: bytes  # never registered before the fuzzing: the register operation's 201, then 200
    fresh_card: bytes
    valid_card: bytes

    def digest(self, which: str) -> str:
        return digest_of(getattr(self, which))


@dataclass
class Service:
    schema: Any  # schemathesis.BaseSchema
    session: Any  # a requests.Session (schemathesis's ASGI client, or a plain one)
    fixtures: Fixtures
    base_url: str | None = None

    def call(self, case: Any) -> Any:
        kwargs: dict[str, Any] = {"session": self.session, "timeout": REQUEST_TIMEOUT_S}
        if self.base_url is not None:
            kwargs["base_url"] = self.base_url
        return case.call(**kwargs)


def _prepare(session: Any, base: str) -> Fixtures:
    """Register and revoke the checkpoints the steered requests need, through the API itself."""
    valid, fresh = make_checkpoint(seed=101), make_checkpoint(seed=104)
    fixtures = Fixtures(
        valid=valid,
        revoked=make_checkpoint(seed=102),
        to_revoke=make_checkpoint(seed=103),
        fresh=fresh,
        fresh_card=make_card(fresh),
        valid_card=make_card(valid),
    )
    for checkpoint in (fixtures.valid, fixtures.revoked, fixtures.to_revoke):
        files = {"checkpoint": ("m", checkpoint), "card": ("c", make_card(checkpoint))}
        response = session.post(
            f"{base}/models", files=files, headers={"X-API-Key": REGISTRAR_KEY}, timeout=60
        )
        assert response.status_code == 201, response.text
    response = session.post(
        f"{base}/models/{fixtures.digest('revoked')}/revoke",
        json={"reason": "safety-issue"},
        headers={"X-API-Key": REVOKER_KEY},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return fixtures


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("schema-fuzz")
    if TRANSPORT == "uvicorn":
        yield from _uvicorn_service(root)
    else:
        yield from _asgi_service(root)


def _asgi_service(root: Path) -> Iterator[Service]:
    from schemathesis.python import asgi

    from registry.chain.connection import memory_client

    # The chain is made here, not by the app's lifespan: schemathesis's pytest plugin ends every
    # ASGI lifespan after each test, and the next request starts a new one (new services, same
    # chain, same store).
    settings = settings_for(root / "data")
    app = create_app(settings, client=memory_client(settings))
    with asgi.get_client(app) as session:  # starts the lifespan, shared with from_asgi below
        fixtures = _prepare(session, "")
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        yield Service(schema, session, fixtures)
    asgi.shutdown_lifespans()


def _uvicorn_service(root: Path) -> Iterator[Service]:
    import requests

    from registry.devnet import start_service

    env = {
        "REGISTRY_RPC_URL": "memory",
        "REGISTRY_DATA_DIR": str(root / "data"),
        "REGISTRY_API_KEYS": API_KEYS,
        "REGISTRY_VALIDITY_TTL_S": "0.2",
    }
    log_path = root / "server.log"
    with (
        start_service(env, workers=1, log_path=log_path) as server,
        requests.Session() as session,
    ):
        session.trust_env = False  # loopback only: never through a proxy from the environment
        fixtures = _prepare(session, server.url)
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        yield Service(schema, session, fixtures, base_url=server.url)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-4000:]


# --- steering -------------------------------------------------------------------------------------


# Which key each request carries, cycling with the request's number: mostly the role a write
# needs (else nearly every write would stop at 401/403), every other case too. "drawn": whatever
# schemathesis generated for the header, often nothing.
KEY_CYCLES = {
    "POST /models": ("registrar", "registrar", "registrar", "reader", "unknown", "drawn"),
    "POST /models/{digest}/revoke": ("revoker", "revoker", "revoker", "registrar", "none", "drawn"),
}
READ_KEYS = ("none", "reader", "registrar", "revoker", "unknown", "drawn")


@dataclass(frozen=True)
class Steer:
    """How one generated request is steered. The choices cycle with the request's number (moduli
    6, 5 and 7, so every combination comes up within 210 requests): Hypothesis, left to draw them,
    settled on one value for most of a run. The values (an unknown key, extra query parameters)
    are drawn."""

    key: str  # registrar | revoker | reader | none | unknown | drawn
    digest: int  # 0: stored valid (for revoke: the one kept for it), 1: revoked, else generated
    body: int  # which real body replaces the generated one (see _steer_body), else generated
    unknown_key: str
    junk_query: dict[str, str]

    @classmethod
    def nth(cls, label: str, n: int, unknown_key: str, junk_query: dict[str, str]) -> Steer:
        keys = KEY_CYCLES.get(label, READ_KEYS)
        return cls(keys[n % 6], n % 5, n % 7, unknown_key, junk_query)


UNKNOWN_KEYS = st.text(
    # Latin-1 a header can carry: no controls (C0, DEL, C1), no leading space.
    st.characters(codec="latin-1", exclude_categories=["Cc", "Zs"]),
    min_size=1,
    max_size=300,
)
JUNK_QUERIES = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=6).map(lambda s: "x_" + s),
    st.text(max_size=20),
    max_size=2,
)


def _images(n: int) -> Any:
    return [Binary(png() if i % 2 == 0 else jpeg()) for i in range(n)]


def _steer_body(case: Any, fixtures: Fixtures, which: int) -> None:
    path, method = case.operation.path, case.operation.method.upper()
    tampered = bytearray(fixtures.valid)
    tampered[-1] ^= 0x01  # a byte of the last tensor: still a well-formed checkpoint
    if (method, path) == ("POST", "/verify"):
        choices = [
            ("application/octet-stream", fixtures.valid),
            ("application/octet-stream", bytes(tampered)),
            ("multipart/form-data", {"file": Binary(fixtures.revoked)}),
        ]
    elif (method, path) == ("POST", "/models"):
        choices = [
            (
                "multipart/form-data",
                {"checkpoint": Binary(fixtures.fresh), "card": Binary(fixtures.fresh_card)},
            ),
            (
                "multipart/form-data",
                {"checkpoint": Binary(fixtures.valid), "card": Binary(fixtures.fresh_card)},
            ),
            (
                "multipart/form-data",
                {"checkpoint": Binary(fixtures.valid), "card": Binary(fixtures.valid_card)},
            ),
        ]
    elif path.endswith("/predict"):
        pixels = [[(x * y) % 256 for x in range(28)] for y in range(28)]
        choices = [
            ("multipart/form-data", {"images": _images(1)}),
            ("multipart/form-data", {"images": _images(3)}),
            ("application/json", {"pixels": pixels}),
            ("application/json", {"images": [pixels, pixels]}),
            ("image/png", png()),
            ("image/jpeg", jpeg()),
        ]
    elif path.endswith("/revoke"):
        choices = [
            ("application/json", {"reason": "superseded"}),
            ("application/json", {"reason": "safety-issue", "replacement": None}),
            ("application/json", {"reason": 3}),
            ("application/json", {"reason": "other", "replacement": fixtures.digest("valid")}),
        ]
    else:
        return
    if which < len(choices):
        case.media_type, case.body = choices[which]


def _steer(case: Any, steer: Steer, fixtures: Fixtures, *, negative: bool) -> None:
    headers = dict(case.headers or {})
    if steer.key in KEYS:
        headers["X-API-Key"] = KEYS[steer.key]
    elif steer.key == "none":
        headers.pop("X-API-Key", None)
    elif steer.key == "unknown":
        headers["X-API-Key"] = steer.unknown_key
    case.headers = headers
    if negative:
        return  # a schema-violating request stays what it is, so it must be refused
    case.query = {**(case.query or {}), **steer.junk_query}
    if "digest" in (case.path_parameters or {}) and steer.digest < 2:
        which = "valid" if steer.digest == 0 else "revoked"
        if case.operation.path.endswith("/revoke"):
            which = "to_revoke" if steer.digest == 0 else "revoked"
        case.path_parameters = {**case.path_parameters, "digest": fixtures.digest(which)}
    if case.body is not None:
        _steer_body(case, fixtures, steer.body)


# --- checks ---------------------------------------------------------------------------------------


def _assert_one_error_shape(response: Any) -> None:
    assert b"Traceback" not in response.content, response.content[:2000]
    if response.status_code < 400:
        return
    body = json.loads(response.content)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["details"], dict), error


def _kind(exc: Exception, response: Any) -> str:
    if isinstance(exc, FailureGroup):
        titles = sorted(f.title for f in exc.exceptions)
    else:
        titles = [str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__]
    return f"{response.status_code}: {'; '.join(titles)}"


def _describe(case: Any, steer: Steer, negative: bool, response: Any, exc: Exception) -> str:
    """A short account of a failure (schemathesis's own quotes whole bodies as curl commands)."""
    if isinstance(exc, FailureGroup):
        problems = "\n".join(f"- {f.title}: {f.message}" for f in exc.exceptions)
    else:
        problems = f"- {exc}"
    request = response.request
    body = request.body or b""
    return (
        f"{request.method} {request.url} ({'negative' if negative else 'positive'} case, "
        f"key: {steer.key}, media type: {case.media_type})\n"
        f"request headers: {dict(request.headers)}\n"
        f"request body ({len(body)} bytes): {bytes(body[:300]) if isinstance(body, bytes) else body[:300]!r}\n"
        f"answer {response.status_code}: {response.content[:1500]!r}\n{problems}"
    )


def _strategy(operation: Any) -> Any:
    positive = operation.as_strategy(GenerationMode.POSITIVE)
    has_inputs = bool(operation.path_parameters or operation.query or operation.body)
    if not has_inputs:
        return positive  # nothing to violate (GET /health): steering varies keys and query
    return st.one_of(positive, operation.as_strategy(GenerationMode.NEGATIVE))


# Statuses a steered request is bound to reach for these operations within a few hundred examples.
EXPECTED_REACHED = {
    "POST /verify": {200, 400, 422},
    "POST /models": {200, 201, 400, 401, 403, 422},
    "GET /models/{digest}": {200, 400, 404},
    "GET /models/{digest}/checkpoint": {200, 400, 403, 404},
    "POST /models/{digest}/revoke": {200, 400, 401, 403, 404, 409},
    "POST /models/{digest}/predict": {200, 400, 403, 404},
}


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_answer_matches_the_documented_schema(
    service: Service, label: str, record_property: Any
) -> None:
    method, path = label.split(" ", 1)
    operation = service.schema[path][method]
    statuses: Counter[int] = Counter()
    modes: Counter[str] = Counter()
    failures: dict[str, str] = {}  # first description per kind of failure

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],  # failures are collected below, not shrunk: see Steer
    )
    @given(case=_strategy(operation), unknown_key=UNKNOWN_KEYS, junk_query=JUNK_QUERIES)
    def run(case: Any, unknown_key: str, junk_query: dict[str, str]) -> None:
        steer = Steer.nth(label, sum(statuses.values()), unknown_key, junk_query)
        # Read before steering: schemathesis relabels an edited case (a real file part is
        # "binary", which its validator cannot check, so it would call the case negative).
        negative = case.meta is not None and case.meta.generation.mode.is_negative
        _steer(case, steer, service.fixtures, negative=negative)
        response = service.call(case)
        statuses[response.status_code] += 1
        modes["negative" if negative else "positive"] += 1
        try:
            checks = CHECKS if negative else POSITIVE_CHECKS
            if response.status_code in EXPECTED_5XX.get(label, ()):
                assert response.json()["error"]["code"] == "proofs_unsupported", response.text
                checks = [check for check in checks if check is not not_a_server_error]
            case.validate_response(response, checks=checks)
            _assert_one_error_shape(response)
        except (FailureGroup, AssertionError) as exc:
            kind = _kind(exc, response)
            if kind not in failures and len(failures) < MAX_FAILURES:
                failures[kind] = _describe(case, steer, negative, response, exc)

    started = time.monotonic()
    run()
    elapsed = time.monotonic() - started
    requests_sent = sum(statuses.values())
    record_property("examples", requests_sent)
    record_property("statuses", json.dumps(dict(sorted(statuses.items()))))
    record_property("seconds", round(elapsed, 1))
    record_property("failures", len(failures))
    print(f"{label}: {requests_sent} requests in {elapsed:.1f} s, {dict(modes)}, {dict(statuses)}")

    assert not failures, f"{len(failures)} kinds of failure:\n\n" + "\n\n".join(failures.values())
    assert requests_sent >= EXAMPLES, f"only {requests_sent} requests for {label}"
    if EXAMPLES >= 210 and label in EXPECTED_REACHED:
        missing = EXPECTED_REACHED[label] - set(statuses)
        assert not missing, f"{label} never answered {sorted(missing)}: {dict(statuses)}"


def test_the_fuzzed_operations_are_every_operation_the_live_document_lists(
    service: Service,
) -> None:
    live = {
        f"{result.ok().method.upper()} {result.ok().path}"
        for result in service.schema.get_all_operations()
    }
    assert live == set(OPERATIONS)
    assert len(live) >= 8
