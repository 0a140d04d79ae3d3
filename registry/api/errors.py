"""Exception -> HTTP status, in one table and one handler.

Every error the service sends has the body ``{"error": {"code", "message", "details"}}``: the
registry's own errors (``RegistryError.to_dict()``, less the server's paths: ``disclosure.py``),
FastAPI's request validation errors, Starlette's HTTP errors (unknown route, wrong method) and,
for a genuine bug, a 500 without a traceback.

The table is ordered from the most specific class to the most general; the first ``isinstance``
match wins, so a subclass listed before its base can get its own status.

    InvalidCheckpoint (PickleRejected,
    MalformedCheckpoint, SpecError)        422  the upload is not a checkpoint this registry loads
    PayloadTooLarge                        413
    RequestTimeout                         408  the body did not arrive in time
    InvalidInput (and the rest of it)      400  incl. InvalidModelCard and the trainer's errors
    Unauthenticated                        401  no API key, or a key nobody configured
    Forbidden                              403  a valid key without the role, or a keyless
                                                browser request another site started
                                                (CrossSiteRequest, from api/browser.py)
    NotVerified                            403  unknown to the gate, revoked, policy, unconfirmed
    OmsSignatureRefused                    403  a model-signing bundle that does not vouch for it
    NotFound, UnknownModel, UnknownBatch   404
    AlreadyRegistered, AlreadyRevoked,
    BatchAlreadyRegistered, BatchRevoked   409
    EmptyBatch, InvalidProof               400  (named: their codes say which)
    InvalidNonce (NonceUsed,
    NonceCancelled)                        409  a signed request replayed, cancelled, out of order
    ExpiredSignature                       400  a signed request past its deadline, for good
    InvalidSigner                          403  a signature that is not the registrar's
    MissingRole, NotAllowedToRevoke,
    NotAllowedToRevokeBatch, ...           403  the contract refused the service's signing key
    other ContractRevert                   400  the contract refused the request's values
    ChainUnavailable, WrongChain,
    ContractMismatch                       503  nothing can be verified: fail closed
    AuditLogCorrupt, AuditLogUnavailable   503  nothing is served that cannot be recorded
    DeadlineExceeded                       503  a request over REGISTRY_REQUEST_DEADLINE_S;
                                                Retry-After, like every 503
    StoreUnavailable                       503  the S3 store is unreachable or refuses access
    PullFailed                             502  no source gave the checkpoint's bytes
    other ChainError (TransactionFailed)   502
    ConfigurationError, StoreError         500  the service is misconfigured or its disk is bad
    RequestValidationError                 422  FastAPI's own parameter/body validation
    StarletteHTTPException                 its status (404 route, 405 method...)
    anything else                          500  ``internal_error``, logged with its traceback
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry.api.disclosure import public_error
from registry.api.refusals import note_outcome
from registry.chain.reverts import (
    AlreadyRegistered,
    AlreadyRevoked,
    BatchAlreadyRegistered,
    BatchRevoked,
    EmptyBatch,
    ExpiredSignature,
    InvalidNonce,
    InvalidProof,
    InvalidSigner,
    MissingRole,
    NotAdmin,
    NotAllowedToRevoke,
    NotAllowedToRevokeBatch,
    NotPendingAdmin,
    UnknownBatch,
    UnknownModel,
)
from registry.errors import (
    AuditLogCorrupt,
    AuditLogUnavailable,
    ChainError,
    ChainUnavailable,
    ConfigurationError,
    ContractMismatch,
    ContractRevert,
    DeadlineExceeded,
    Forbidden,
    InvalidCheckpoint,
    InvalidInput,
    NotFound,
    NotVerified,
    PayloadTooLarge,
    PullFailed,
    RegistryError,
    RequestTimeout,
    SpecError,
    StoreError,
    StoreUnavailable,
    Unauthenticated,
    WrongChain,
)
from registry.oms import OmsSignatureRefused

log = logging.getLogger("registry.api")

STATUS_TABLE: tuple[tuple[type[BaseException], int], ...] = (
    (InvalidCheckpoint, 422),
    (PayloadTooLarge, 413),
    (RequestTimeout, 408),
    (InvalidInput, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotVerified, 403),
    (OmsSignatureRefused, 403),
    (NotFound, 404),
    (UnknownModel, 404),
    (UnknownBatch, 404),
    (AlreadyRegistered, 409),
    (AlreadyRevoked, 409),
    (BatchAlreadyRegistered, 409),
    (BatchRevoked, 409),
    (EmptyBatch, 400),
    (InvalidProof, 400),
    (InvalidNonce, 409),
    (ExpiredSignature, 400),
    (InvalidSigner, 403),
    (NotAllowedToRevokeBatch, 403),
    (MissingRole, 403),
    (NotAdmin, 403),
    (NotPendingAdmin, 403),
    (NotAllowedToRevoke, 403),
    (ContractRevert, 400),
    (ChainUnavailable, 503),
    (WrongChain, 503),
    (ContractMismatch, 503),
    (AuditLogCorrupt, 503),
    (AuditLogUnavailable, 503),
    (DeadlineExceeded, 503),
    (StoreUnavailable, 503),
    (PullFailed, 502),
    (ChainError, 502),
    (ConfigurationError, 500),
    (StoreError, 500),
    (RequestValidationError, 422),
)

# Headers that tell a client what to do next.
RETRY_AFTER_S = "2"


def status_for(exc: BaseException) -> int:
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code
    for cls, status in STATUS_TABLE:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _body(exc: BaseException, status: int) -> dict[str, Any]:
    if isinstance(exc, SpecError):
        return error_body("invalid_checkpoint", str(exc), {"problem": exc.code})
    if isinstance(exc, RegistryError):
        public = public_error(exc)  # no server paths: store, audit log, configuration
        details = dict(public["details"])
        if isinstance(exc, NotVerified) and hasattr(exc.verdict, "to_dict"):
            details["verdict"] = exc.verdict.to_dict()
        return error_body(exc.code, public["message"], details)
    if isinstance(exc, RequestValidationError):
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
        return error_body(
            "invalid_request",
            f"the request does not match what this endpoint takes ({where}); see /openapi.json",
            {"errors": errors},
        )
    if isinstance(exc, StarletteHTTPException):
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        code = phrase.lower().replace(" ", "_").replace("-", "_") or "http_error"
        message = exc.detail if isinstance(exc.detail, str) else phrase
        if status == 404 and message == phrase:
            message = "no such endpoint; the API is described at /openapi.json"
        allowed = (exc.headers or {}).get("Allow")
        if status == 405 and allowed:
            message = f"this endpoint takes only {allowed}; the API is described at /openapi.json"
        return error_body(code, message)
    return error_body(
        "internal_error",
        "the service failed on this request; it has been logged. Try again, and report it "
        "if it persists",
    )


def error_response(exc: BaseException) -> JSONResponse:
    """The one place an exception becomes an HTTP response."""
    status = status_for(exc)
    if status >= 500 and not isinstance(exc, RegistryError):
        log.error("unhandled error", exc_info=exc)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'ApiKey header="X-API-Key"'
    if status == 503:
        headers["Retry-After"] = RETRY_AFTER_S
    if isinstance(exc, StarletteHTTPException) and exc.headers:
        headers.update(exc.headers)
    body = _body(exc, status)
    note_outcome(body["error"]["code"])  # a refusal no route records is counted under it
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


async def handle(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, StarletteHTTPException) and exc.status_code == 405:
        allowed = _allowed_methods(request)
        if allowed:
            exc = StarletteHTTPException(405, headers={**(exc.headers or {}), "Allow": allowed})
    return error_response(exc)


def _allowed_methods(request: Request) -> str:
    """Every method the OpenAPI document lists for the request's path ('' for other paths).

    Starlette's 405 names the methods of the first route matching the path only, so
    ``DELETE /models`` would answer ``Allow: GET`` and hide ``POST /models``.
    """
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)), path):
            methods |= {method.upper() for method in operations}
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    """Route every exception class through ``handle`` (Exception last: a bug, still our shape)."""
    for cls in (RegistryError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(cls, handle)
    app.add_exception_handler(Exception, handle)


# --- OpenAPI -----------------------------------------------------------------------------------

_DESCRIPTIONS = {
    400: "Bad input: a malformed digest, image, model card or parameter (`invalid_input` family)",
    401: "No API key, or one that is not configured (`unauthenticated`)",
    403: "The key lacks the role (`forbidden`), the checkpoint may not be used: "
    "unknown / revoked / policy / unconfirmed (`not_verified`, details.reason), or another "
    "site's page sent the request from a browser without a key (`cross_site_request`)",
    404: "Unknown digest, nothing stored under it, or no such endpoint (`not_found`)",
    408: "The request body did not arrive within the configured time (`request_timeout`)",
    409: "Conflicts with the chain's state (`already_registered`, `already_revoked`, "
    "`batch_already_registered`, `batch_revoked`; a signed registration's nonce: `nonce_used`, "
    "`nonce_cancelled`, `invalid_nonce`)",
    413: "Body, image or pixel count over the configured limit (`payload_too_large`)",
    422: "Not a loadable safetensors checkpoint (`invalid_checkpoint`, `pickle_rejected`), "
    "or the request does not match the schema (`invalid_request`)",
    500: "Misconfiguration, a corrupt store, or a bug (`internal_error`); never a traceback",
    502: "The chain answered unexpectedly (`transaction_failed`, `chain_error`)",
    503: "The chain cannot be asked, is the wrong chain or holds the wrong contract: nothing is "
    "verified and no inference runs (`chain_unavailable`, `wrong_chain`, `contract_mismatch`); "
    "or the request was not processed within the service's deadline (`deadline_exceeded`); "
    "or the checkpoint store cannot be reached (`store_unavailable`). "
    "Retry after the Retry-After header's seconds",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses (plus 500, always possible, and
    408 wherever a body is limited: the body deadline comes with the size limit)."""
    from registry.api.schemas import ErrorResponse

    wanted: Sequence[int] = sorted({*statuses, 500, *([408] if 413 in statuses else [])})
    return {s: {"model": ErrorResponse, "description": _DESCRIPTIONS[s]} for s in wanted}
