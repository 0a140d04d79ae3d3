"""Making a checkpoint registered elsewhere usable here, without registrar rights.

A clinic that received a checkpoint (e-mail, USB stick, a hub, a mirror) imports it, or has the
service pull it, with a read key (or none when reads are open). Nothing is anchored, so no
registrar key is needed; what is kept is bounded by what is anchored: bytes are stored only when
their digest is registered, valid under this clinic's policy and they pass the format check
(``services.import_checkpoint``). Every import, whichever way it came, is one audit entry
(event ``import``, with ``via``: upload, verify, pull or pull-through).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from registry.api.auth import Caller
from registry.api.deps import KEY_OPTIONAL, DigestPath, Reader, Services, ServicesDep
from registry.api.errors import responses
from registry.api.uploads import body_or_file, file_bytes, is_multipart, read_form
from registry.core.digest import Digest
from registry.core.endpoint import redact_endpoint
from registry.pull import MAX_SOURCES, HostGuard, PullResult, pull, pull_through
from registry.services import ImportResult, import_checkpoint

router = APIRouter(prefix="/models", tags=["import"])


class ImportOut(BaseModel):
    digest: str
    imported: bool = Field(description="false: the service already held it; nothing changed")
    stored: bool
    card_stored: bool = Field(description="whether the service holds the anchored model card")
    verdict: dict[str, Any] = Field(description="the verdict that allowed the import")


class PullOut(ImportOut):
    source: str | None = Field(description="the source that gave the bytes; null: none asked")
    attempts: list[dict[str, Any]] = Field(
        description="the sources that failed before it: source, problem, message"
    )


class PullIn(BaseModel):
    sources: list[str] = Field(
        default_factory=list,
        max_length=MAX_SOURCES,
        description="http(s) URLs tried in order: a registry service's base URL, a folder "
        "(ending in /, holding <hex>.safetensors) or the file; s3:// only inside an s3:// mirror "
        "(the service's credentials are not the caller's); empty = the configured mirrors",
    )


def import_bytes(
    services: Services,
    caller: Caller,
    data: bytes,
    *,
    via: str,
    card: bytes | None = None,
    expected: Digest | None = None,
) -> ImportResult:
    """The API's one import: checks, store, audit entry (in a worker thread)."""
    with services.audited("import", caller, digest=str(expected) if expected else None) as entry:
        entry["via"] = via
        result = import_checkpoint(
            data, services.gate().verdict, services.store, card=card, expected=expected
        )
        entry.update(
            digest=str(result.verdict.digest),
            block=result.verdict.checked_block,
            outcome="imported" if result.imported else "already_stored",
        )
    return result


def pull_bytes(
    services: Services,
    caller: Caller,
    digest: Digest,
    sources: list[str],
    *,
    via: str,
) -> PullResult | None:
    """A pull for a caller (``via="pull"``, guarded) or the pull-through of a predict (the
    configured mirrors), audited as an import when it stores or fails."""
    settings = services.settings
    with services.audited("import", caller, digest=str(digest), via=via) as entry:
        if via == "pull":
            # The caller's sources are guarded; the configured mirrors are the operator's choice.
            result: PullResult | None = pull(
                digest,
                sources or settings.mirrors,
                verdict_of=services.gate().verdict,
                store=services.store,
                max_bytes=settings.max_upload_bytes,
                timeout_s=settings.pull_timeout_s,
                guard=HostGuard(settings.mirrors) if sources else None,
                s3_endpoint_url=settings.s3_endpoint_url,
            )
        else:
            result = pull_through(
                digest,
                settings.mirrors,
                verdict_of=services.gate().verdict,
                store=services.store,
                max_bytes=settings.max_upload_bytes,
                timeout_s=settings.pull_timeout_s,
                s3_endpoint_url=settings.s3_endpoint_url,
            )
        imported = result is not None and result.import_result.imported
        entry.update(
            block=result.import_result.verdict.checked_block if result else None,
            outcome="imported" if imported else "already_stored",
            source=redact_endpoint(result.source) if result and result.source else None,
        )
    return result


_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The checkpoint: a multipart part `checkpoint` (with an optional `card`, "
        "the anchored model card), or the raw bytes.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["checkpoint"],
                    "properties": {
                        "checkpoint": {"type": "string", "format": "binary"},
                        "card": {"type": "string", "format": "binary"},
                    },
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/{digest}/import",
    response_model=ImportOut,
    status_code=201,
    summary="Keep a registered, verified checkpoint here (read rights)",
    responses={
        200: {"model": ImportOut, "description": "Already held; nothing changed"},
        **responses(400, 401, 403, 404, 413, 422, 503),
    },
    openapi_extra={**_IMPORT_BODY, **KEY_OPTIONAL},
)
async def import_model(
    digest: DigestPath, request: Request, response: Response, services: ServicesDep, caller: Reader
) -> Any:
    """The bytes must hash to `digest` (400), pass the format check (422), be registered (404)
    and valid under this clinic's policy (403, `details.reason`); a card, if sent, must be the
    anchored one (400). Then both are kept: 201, or 200 when the checkpoint was already held.
    Nothing is stored on any refusal."""
    wanted = Digest.parse(digest)
    card = None
    if is_multipart(request):
        form = await read_form(request, max_files=2)
        try:
            data = await file_bytes(form, "checkpoint")
            if form.getlist("card"):
                card = await file_bytes(form, "card")
        finally:
            await form.close()
    else:
        data = await body_or_file(request, "checkpoint")
    result = await run_in_threadpool(
        import_bytes, services, caller, data, via="upload", card=card, expected=wanted
    )
    if not result.imported:
        response.status_code = 200
    return result.to_dict()


@router.post(
    "/{digest}/pull",
    response_model=PullOut,
    status_code=201,
    summary="Fetch a registered checkpoint from untrusted http(s) sources and keep it",
    responses={
        200: {"model": PullOut, "description": "Already held; no source was asked"},
        **responses(400, 401, 403, 404, 413, 422, 502, 503),
    },
    openapi_extra={
        **KEY_OPTIONAL,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": PullIn.model_json_schema()}},
        },
    },
)
async def pull_model(
    digest: DigestPath, request: Request, response: Response, services: ServicesDep, caller: Reader
) -> Any:
    """Sources are tried in order; each is read within `REGISTRY_PULL_TIMEOUT_S` and
    `REGISTRY_MAX_UPLOAD_BYTES`, and its bytes must hash to `digest`. Only http(s) URLs, and none
    that resolves to a loopback, private or reserved address unless it is a configured mirror
    (`REGISTRY_MIRRORS`). 502 `pull_failed` when no source gave the bytes (`details.attempts`
    names each and what was wrong); 404/403 before any source is asked for an unknown or
    refused digest."""
    wanted = Digest.parse(digest)
    try:
        body = PullIn.model_validate_json(await request.body() or b"{}")
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    result = await run_in_threadpool(pull_bytes, services, caller, wanted, body.sources, via="pull")
    assert result is not None  # a caller's pull always answers
    if not result.import_result.imported:
        response.status_code = 200
    return result.to_dict()
