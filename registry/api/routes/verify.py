"""``POST /verify``: is this exact file a registered, unrevoked checkpoint the clinic accepts?"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from registry.api.auth import Caller
from registry.api.deps import KEY_OPTIONAL, Reader, Services, ServicesDep
from registry.api.errors import responses
from registry.api.schemas import VerdictOut
from registry.api.uploads import body_or_file
from registry.checkpoint_guard import inspect_checkpoint
from registry.hashing import digest_bytes

router = APIRouter(tags=["verification"])

CHECKPOINT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The checkpoint file: a multipart part named `file`, or the raw bytes.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/verify",
    response_model=VerdictOut,
    summary="Verify a checkpoint file against the registry",
    responses=responses(400, 401, 413, 422, 503),
    openapi_extra={**CHECKPOINT_BODY, **KEY_OPTIONAL},
)
async def verify(request: Request, services: ServicesDep, caller: Reader) -> Any:
    """The verdict for the uploaded bytes: `verified`, or why not (`unknown`, `revoked`, `policy`,
    `unconfirmed`). A "no" is a 200 with `verified: false`; only a chain that cannot answer is an
    error (503). The file's header is checked first and a pickle, a `torch.save` archive or a
    malformed safetensors file is refused (422) without ever being deserialised."""
    data = await body_or_file(request, "file")
    # Returned as a ready JSONResponse: the route's response_model documents the shape, and
    # validating our own dict again on every request would only cost time.
    return JSONResponse(await run_in_threadpool(_verify, services, caller, data))


def _verify(services: Services, caller: Caller, data: bytes) -> dict[str, Any]:
    digest = digest_bytes(data)
    with services.audited("verify", caller, digest=str(digest)) as entry:
        inspect_checkpoint(data)
        verdict = services.gate().verdict(digest)
        entry.update(block=verdict.checked_block, outcome=verdict.reason)
    return {**verdict.to_dict(), "stored": services.store.has(digest.hex, "checkpoint")}
