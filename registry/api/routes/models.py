"""The registry's records: list, show, download, register (registrar key), revoke (revoker key)."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import Field, ValidationError
from starlette.concurrency import run_in_threadpool

from registry.api.auth import Caller
from registry.api.deps import (
    KEY_OPTIONAL,
    DigestPath,
    Reader,
    Registrar,
    Revoker,
    Services,
    ServicesDep,
)
from registry.api.errors import responses
from registry.api.schemas import (
    ModelDetailOut,
    ModelListOut,
    RecordOut,
    RegistrationOut,
    RevokeIn,
)
from registry.api.uploads import file_bytes, read_form, text_field
from registry.chain.attestations import Attestations
from registry.core.address import parse_address
from registry.core.digest import Digest, digest_bytes
from registry.core.records import ModelRecord
from registry.errors import InvalidInput, NotFound
from registry.gate import refusal
from registry.index import DEFAULT_LIMIT, MAX_LIMIT, Filters, PageQuery
from registry.services import register_with_card, revoke

router = APIRouter(prefix="/models", tags=["models"])

LIST_CATCH_UP_S = 1.0  # a list waits at most this for the index to read new blocks
MAX_NAME_FILTER = 200


def not_registered(digest: Digest) -> NotFound:
    return NotFound(
        f"no checkpoint {digest} is registered on this chain; check the digest "
        "(`registry hash FILE`), or the file was never released",
        digest=str(digest),
    )


def not_stored(digest: Digest) -> NotFound:
    return NotFound(
        f"this service does not hold the checkpoint {digest}; a registrar uploads it with "
        "POST /models (checkpoint + model card)",
        digest=str(digest),
        stored=False,
    )


class ModelPageOut(ModelListOut):
    """One page of the catalogue (``count``: records on this page)."""

    next: str | None = Field(
        default=None, description="the next page's link; absent on the last page"
    )
    indexed_to_block: int | None = Field(
        description="the newest block the answer knows of: how fresh it is when the chain "
        "could not be asked (null: nothing indexed yet)"
    )


@router.get(
    "",
    response_model=ModelPageOut,
    response_model_exclude_unset=True,
    summary="List registered checkpoints, a page at a time",
    responses=responses(400, 401, 422, 502, 503),
    openapi_extra=KEY_OPTIONAL,
)
def list_models(
    request: Request,
    services: ServicesDep,
    caller: Reader,
    registrant: Annotated[
        str | None, Query(description="only those registered by this 0x address")
    ] = None,
    valid: Annotated[
        bool | None, Query(description="true: only valid ones; false: only revoked ones")
    ] = None,
    parent: Annotated[
        str | None, Query(description="only versions derived from this digest")
    ] = None,
    min_accuracy_bps: Annotated[
        int | None, Query(description="only those anchored with at least this accuracy")
    ] = None,
    name: Annotated[
        str | None,
        Query(
            description="only those whose model card (held by this service when it was "
            "indexed) has a name containing this, in any case"
        ),
    ] = None,
    limit: Annotated[int, Query(description=f"records per page, 1 to {MAX_LIMIT}")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(description="from the `next` link of the page before")
    ] = None,
) -> Any:
    """Read from the service's index of the chain's events, in registration order (block, then
    log index), after a catch-up of at most a second; ``indexed_to_block`` says how far that
    reached. A chain that cannot be asked is a 503, as everywhere. A verdict never comes from
    here: /verify and predict read the chain."""
    filters = Filters(
        registrant=parse_address(registrant, "registrant") if registrant is not None else None,
        valid=valid,
        parent=Digest.parse(parent) if parent is not None else None,
        min_accuracy_bps=_accuracy(min_accuracy_bps),
        name=_name(name),
    )
    query = PageQuery.parse(filters, limit, cursor)
    # A chain that cannot be asked is a 503 here too (fail closed): the page's `valid` flags are
    # the chain's word, and an index that cannot catch up could show a revoked model as valid.
    services.index.catch_up(budget_s=LIST_CATCH_UP_S)
    page = services.index.page(query)
    body: dict[str, Any] = {
        "count": len(page.records),
        "models": [
            {**r.to_dict(), "stored": services.store.has_maybe_stale(r.digest.hex, "checkpoint")}
            for r in page.records
        ],
        "indexed_to_block": page.indexed_to_block,
    }
    if page.next_cursor is not None:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        body["next"] = f"{request.url.path}?{urlencode([*params, ('cursor', page.next_cursor)])}"
    return body


def _accuracy(value: int | None) -> int | None:
    if value is not None and not 0 <= value <= 10_000:
        raise InvalidInput(
            f"min_accuracy_bps {value} is out of range: basis points run from 0 to 10000 "
            "(9731 = 97.31 %)",
            min_accuracy_bps=value,
        )
    return value


def _name(value: str | None) -> str | None:
    if value is not None and not 1 <= len(value) <= MAX_NAME_FILTER:
        raise InvalidInput(
            f"name filter of {len(value)} characters: give 1 to {MAX_NAME_FILTER}",
            name=value[:MAX_NAME_FILTER],
        )
    return value


@router.get(
    "/{digest}",
    response_model=ModelDetailOut,
    summary="A checkpoint's record, lineage, children, model card and evaluator attestations",
    responses=responses(400, 401, 404, 502, 503),
    openapi_extra=KEY_OPTIONAL,
)
def show_model(digest: DigestPath, services: ServicesDep, caller: Reader) -> Any:
    wanted = Digest.parse(digest)
    client = services.client()
    record = client.get(wanted)
    if record is None:
        raise not_registered(wanted)
    return {
        "record": record.to_dict(),
        "stored": services.store.has(wanted.hex, "checkpoint"),
        "lineage": [r.to_dict() for r in client.lineage(wanted)],
        "children": [str(d) for d in client.children(wanted)],
        "card": _stored_card(services, record),
        "attestations": [a.to_dict(record) for a in Attestations(client).all(wanted)],
    }


def _stored_card(services: Services, record: ModelRecord) -> dict[str, Any] | None:
    if not services.store.has(record.card_digest.hex, "card"):
        return None
    card = json.loads(services.store.get(record.card_digest.hex, "card"))
    return card if isinstance(card, dict) else None


@router.get(
    "/{digest}/checkpoint",
    summary="Download the stored checkpoint (only while it is verified)",
    response_class=Response,
    responses={
        200: {
            "description": "The checkpoint bytes, exactly as registered",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
        **responses(400, 401, 403, 404, 502, 503),
    },
    openapi_extra=KEY_OPTIONAL,
)
def download_checkpoint(digest: DigestPath, services: ServicesDep, caller: Reader) -> Response:
    """Served only when a fresh check finds the checkpoint registered, unrevoked and within the
    clinic's policy (403 with the reason otherwise; 404 when unknown or not stored). The bytes are
    re-hashed on the way out of the store."""
    wanted = Digest.parse(digest)
    with services.audited("download", caller, digest=str(wanted)) as entry:
        verdict = services.gate().check(wanted)
        entry.update(block=verdict.checked_block, outcome=verdict.reason)
        if verdict.reason == "unknown":
            raise not_registered(wanted)
        if not verdict.verified:
            raise refusal(verdict)
        if not services.store.has(wanted.hex, "checkpoint"):
            raise not_stored(wanted)
        data = services.store.get(wanted.hex, "checkpoint")
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{wanted.hex[:16]}.safetensors"',
            "X-Checkpoint-Digest": str(wanted),
        },
    )


@router.post(
    "",
    response_model=RegistrationOut,
    status_code=201,
    summary="Register a checkpoint with its model card (registrar key)",
    responses={
        200: {"model": RegistrationOut, "description": "Already registered with identical fields"},
        **responses(400, 401, 403, 409, 413, 422, 502, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["checkpoint", "card"],
                        "properties": {
                            "checkpoint": {
                                "type": "string",
                                "format": "binary",
                                "description": "the .safetensors checkpoint",
                            },
                            "card": {
                                "type": "string",
                                "format": "binary",
                                "description": "the model card JSON: names the checkpoint's "
                                "sha256, its test accuracy (basis points) and the test set's "
                                "digest",
                            },
                            "parent": {
                                "type": "string",
                                "description": "digest of the version this one derives from "
                                "(default: the card's parent)",
                            },
                        },
                    }
                }
            },
        }
    },
)
async def register_model(
    request: Request, response: Response, services: ServicesDep, caller: Registrar
) -> Any:
    """The header is checked (never deserialised), the accuracy and test-set digest are read from
    the card, the card must name this checkpoint's digest, both files are stored by digest, and
    the registration is sent to the chain. 201 when new; 200 with `already_registered` when the
    same checkpoint was already registered with identical fields by this service's key."""
    form = await read_form(request, max_files=2)
    try:
        checkpoint = await file_bytes(form, "checkpoint")
        card = await file_bytes(form, "card")
        parent = text_field(form, "parent")
    finally:
        await form.close()
    result = await run_in_threadpool(_register, services, caller, checkpoint, card, parent)
    if result["already_registered"]:
        response.status_code = 200
    return result


def _register(
    services: Services, caller: Caller, checkpoint: bytes, card: bytes, parent: str | None
) -> dict[str, Any]:
    digest = digest_bytes(checkpoint)
    with services.audited("register", caller, digest=str(digest)) as entry:
        # The checks `registry register` runs too; both files are stored before the transaction.
        result = register_with_card(
            services.client, checkpoint, card=card, parent=parent, store=services.store
        )
        entry.update(
            block=result.block_number,
            tx=result.tx_hash,
            outcome="already_registered" if result.already_registered else "registered",
        )
    return result.to_dict()


@router.post(
    "/{digest}/revoke",
    response_model=RecordOut,
    summary="Revoke a checkpoint for good (revoker key)",
    responses=responses(400, 401, 403, 404, 409, 413, 422, 502, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": RevokeIn.model_json_schema()}},
        }
    },
)
async def revoke_model(
    digest: DigestPath, request: Request, services: ServicesDep, caller: Revoker
) -> Any:
    """One-way: every gate refuses the checkpoint within its validity TTL (1 s by default).

    Body: `{"reason": "safety-issue", "replacement": "sha256:..."}` (replacement optional)."""
    wanted = Digest.parse(digest)
    try:
        # pydantic-core's depth-bounded parser, not json.loads (see uploads.parse_json).
        body = RevokeIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    return await run_in_threadpool(_revoke, services, caller, wanted, body)


def _revoke(services: Services, caller: Caller, wanted: Digest, body: RevokeIn) -> Any:
    with services.audited("revoke", caller, digest=str(wanted)) as entry:
        record = revoke(services.client, wanted, body.reason, body.replacement)
        services.gate().forget(wanted)  # this worker refuses at once; others within the TTL
        revocation = record.revocation
        entry.update(
            block=revocation.block_number if revocation else None,
            tx=revocation.tx_hash if revocation else None,
            outcome="revoked",
            reason=revocation.reason.label if revocation else None,
        )
    return record.to_dict()
