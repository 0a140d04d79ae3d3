"""Every endpoint answers errors in one shape, and the OpenAPI document says which ones."""

from __future__ import annotations

from typing import Any

import pytest
from apikit import REVOKER, Api, assert_error
from fastapi.testclient import TestClient

from registry.api import create_app
from registry.api.errors import STATUS_TABLE, status_for
from registry.chain.reverts import AlreadyRegistered, MissingRole, UnknownModel
from registry.errors import (
    ChainUnavailable,
    ContractMismatch,
    Forbidden,
    InvalidCheckpoint,
    InvalidDigest,
    InvalidInput,
    NotFound,
    NotVerified,
    PayloadTooLarge,
    PickleRejected,
    TransactionFailed,
    Unauthenticated,
    WrongChain,
)

UNKNOWN = "ab" * 32

CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("POST", "/verify", {"content": b""}, 400, "invalid_input"),
    ("POST", "/verify", {"content": b"\x80\x04junk"}, 422, "pickle_rejected"),
    ("GET", "/models", {"params": {"registrant": "nobody"}}, 400, "invalid_input"),
    ("GET", "/models", {"params": {"valid": "perhaps"}}, 422, "invalid_request"),
    ("GET", "/models/xyz", {}, 400, "invalid_digest"),
    ("GET", f"/models/{UNKNOWN}", {}, 404, "not_found"),
    ("GET", f"/models/{UNKNOWN}/checkpoint", {}, 404, "not_found"),
    ("GET", "/models/xyz/checkpoint", {}, 400, "invalid_digest"),
    ("POST", "/models", {}, 401, "unauthenticated"),
    ("POST", f"/models/{UNKNOWN}/revoke", {"json": {"reason": "other"}}, 401, "unauthenticated"),
    ("POST", f"/models/{UNKNOWN}/revoke", {"json": {}, "headers": REVOKER}, 422, "invalid_request"),
    ("POST", f"/models/{UNKNOWN}/predict", {"json": {"pixels": []}}, 404, "not_found"),
    ("POST", "/models/xyz/predict", {"json": {"pixels": []}}, 400, "invalid_digest"),
    ("GET", "/no/such/page", {}, 404, "not_found"),
    ("DELETE", "/models", {}, 405, "method_not_allowed"),
    ("PUT", "/verify", {}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), CASES)
def test_errors_have_the_one_shape(
    api: Api, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    assert_error(api.http.request(method, path, **kwargs), status, code)


def test_a_bug_is_a_500_in_the_same_shape_without_a_traceback(api: Api) -> None:
    services = api.http.app.state.services  # type: ignore[attr-defined]

    def broken() -> Any:
        raise RuntimeError("secret internals /etc/passwd")

    services.client = broken
    http = TestClient(api.http.app, raise_server_exceptions=False)

    response = http.get("/models")

    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert error["details"] == {}


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (PickleRejected("pickle"), 422),
        (InvalidCheckpoint("bad"), 422),
        (PayloadTooLarge("body", 2, 1), 413),
        (InvalidDigest("x", "short"), 400),
        (InvalidInput("bad"), 400),
        (Unauthenticated("who?"), 401),
        (Forbidden("no"), 403),
        (NotVerified("revoked", None), 403),
        (NotFound("gone"), 404),
        (UnknownModel(b"\x01" * 32), 404),
        (AlreadyRegistered(b"\x01" * 32, "0x" + "00" * 20), 409),
        (MissingRole("0x" + "00" * 20, 1), 403),
        (ChainUnavailable("http://x", "down"), 503),
        (WrongChain(1, 2, "http://x"), 503),
        (ContractMismatch("0x" + "00" * 20, "holds no code"), 503),
        (TransactionFailed("0x01", "reverted"), 502),
        (RuntimeError("bug"), 500),
    ],
)
def test_the_status_table_maps_each_error_class(exc: BaseException, status: int) -> None:
    assert status_for(exc) == status


def test_no_entry_of_the_status_table_is_shadowed_by_an_earlier_base_class() -> None:
    for i, (cls, _) in enumerate(STATUS_TABLE):
        for earlier, _ in STATUS_TABLE[:i]:
            assert not issubclass(cls, earlier), f"{cls.__name__} is shadowed by {earlier.__name__}"


# --- OpenAPI -------------------------------------------------------------------------------------

ENDPOINTS = {
    ("get", "/health"): (),
    ("post", "/verify"): (400, 401, 413, 422, 503),
    ("get", "/policy"): (401,),
    ("get", "/models"): (400, 401, 503),
    ("post", "/models"): (400, 401, 403, 409, 413, 422, 503),
    ("get", "/models/{digest}"): (400, 401, 404, 503),
    ("get", "/models/{digest}/checkpoint"): (400, 401, 403, 404, 503),
    ("post", "/models/{digest}/revoke"): (400, 401, 403, 404, 409, 422, 503),
    ("post", "/models/{digest}/predict"): (400, 401, 403, 404, 413, 422, 503),
    ("post", "/models/{digest}/import"): (400, 401, 403, 404, 413, 422, 503),
    ("post", "/models/{digest}/pull"): (400, 401, 403, 404, 422, 502, 503),
    ("post", "/models/relay"): (400, 401, 403, 404, 409, 413, 502, 503),
    ("post", "/models/{digest}/oms-bundle"): (400, 401, 403, 413, 503),
    ("post", "/batches"): (400, 401, 404, 413, 503),
    ("get", "/batches/{root}"): (400, 401, 404, 503),
    ("get", "/batches/manifests/{digest}"): (400, 401, 404, 503),
    ("get", "/models/{digest}/proof"): (400, 401, 403, 502, 503),
    ("get", "/audit/proof/{index}"): (400, 401, 404),
    ("get", "/audit/consistency"): (400, 401, 404),
}


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from registry.config import Settings

    app = create_app(Settings(rpc_url="memory", data_dir=tmp_path_factory.mktemp("openapi")))
    return app.openapi()  # the schema needs no lifespan: nothing is connected


def test_openapi_lists_every_endpoint_and_nothing_else(openapi: dict[str, Any]) -> None:
    listed = {(m, p) for p, ops in openapi["paths"].items() for m in ops}
    assert listed == set(ENDPOINTS)


@pytest.mark.parametrize(("method", "path"), sorted(ENDPOINTS))
def test_openapi_documents_each_error_response_with_the_error_schema(
    openapi: dict[str, Any], method: str, path: str
) -> None:
    operation = openapi["paths"][path][method]
    responses = operation["responses"]
    for status in ENDPOINTS[(method, path)]:
        assert str(status) in responses, f"{method} {path} does not document {status}"
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorResponse"}
    if path != "/health":
        assert "500" in responses
    success = responses.get("201") or responses["200"]
    assert success["content"], f"{method} {path} has no documented success body"
    assert operation.get("summary")


def test_openapi_documents_request_bodies_and_the_api_key(openapi: dict[str, Any]) -> None:
    paths = openapi["paths"]
    assert set(paths["/verify"]["post"]["requestBody"]["content"]) == {
        "multipart/form-data",
        "application/octet-stream",
    }
    register = paths["/models"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert register["schema"]["required"] == ["checkpoint", "card"]
    predict = paths["/models/{digest}/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(predict)
    revoke = paths["/models/{digest}/revoke"]["post"]["requestBody"]["content"]
    assert revoke["application/json"]["schema"]["required"] == ["reason"]
    scheme = openapi["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": scheme["description"],
    }
    assert paths["/models"]["post"]["security"] == [{"ApiKey": []}]
    health = paths["/health"]["get"]["responses"]["503"]["content"]["application/json"]
    assert health["schema"] == {"$ref": "#/components/schemas/HealthOut"}
