"""``POST /verify``: is this exact file a registered, unrevoked checkpoint the clinic accepts?
And ``GET /policy``: what "accepts" means here, for a page or script before any file is chosen."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from registry.api.deps import KEY_OPTIONAL, Reader, Services, ServicesDep
from registry.api.errors import responses
from registry.api.modelfacts import CARDS, model_facts, policy_facts
from registry.api.routes.imports import import_bytes
from registry.api.schemas import PolicyOut, VerdictOut
from registry.api.uploads import body_or_file, file_bytes, is_multipart, read_form
from registry.core.batch_proof import BatchProof
from registry.core.digest import Digest, digest_bytes
from registry.core.records import Verdict
from registry.core.store import FileStore
from registry.errors import InvalidInput, StoreUnavailable
from registry.verify import verify_located

log = logging.getLogger("registry.api")
router = APIRouter(tags=["verification"])

# Hashing blocks whatever thread runs it: up to this size (a LeNet checkpoint is ~180 KB, about
# 0.1 ms) the event loop does it; beyond, a thread does.
INLINE_HASH_BYTES = 1 << 20

CHECKPOINT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The checkpoint file: a multipart part named `file`, or the raw bytes.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "proof": {
                            "type": "string",
                            "format": "binary",
                            "description": "optional: the file's inclusion proof in its batch "
                            "(registry-batch-proof-v1, `registry batch proof`), for a batched "
                            "checkpoint whose manifest this service does not hold",
                        },
                    },
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
async def verify(
    request: Request,
    services: ServicesDep,
    caller: Reader,
    store: Annotated[
        bool,
        Query(
            description="true: when the file is verified and not held yet, keep it, so that "
            "/predict can use it at once (an import: read rights suffice, nothing is anchored)"
        ),
    ] = False,
) -> Any:
    """The verdict for the uploaded bytes: `verified`, or why not (`unknown`, `revoked`, `policy`,
    `unconfirmed`). A "no" is a 200 with `verified: false`; only a chain that cannot answer is an
    error (503). The file's header is checked first and a pickle, a `torch.save` archive or a
    malformed safetensors file is refused (422) without ever being deserialised. Beside the
    verdict: what the model's card and header say (`model`: name, intended use, whether it was
    trained on stand-in data) and the clinic's `policy` the verdict applied. With `store=true`
    a verified file is kept (audited as an `import`); any other file never is. A checkpoint
    anchored in a batch is judged through its batch (`batch`: root and position) when this
    service holds the batch's manifest (POST /batches), or through a `proof` part sent with it;
    a proof that does not lead to an anchored root is a 400."""
    data, proof = await _checkpoint_and_proof(request)
    if proof is not None and store:
        raise InvalidInput(
            "store=true keeps a file for /predict, which judges a batched checkpoint through a "
            "manifest this service holds, not a proof sent once: send the batch's manifest "
            "(POST /batches) instead",
            store=True,
        )
    digest = (
        digest_bytes(data)
        if len(data) <= INLINE_HASH_BYTES
        else await run_in_threadpool(digest_bytes, data)
    )
    async with services.audited_async("verify", caller, digest=str(digest)) as entry:
        # A file whose header already passed, and whose verdict is still fresh, costs no thread
        # and no chain call: the answer is known. Anything else is worked out off the loop.
        verdict = services.fresh_verdict(digest)
        if proof is not None:
            verdict = await run_in_threadpool(_verdict_with_proof, services, data, digest, proof)
        elif verdict is None or services.checked_headers.passed(digest) is None:
            verdict = await run_in_threadpool(_verdict, services, data, digest)
        require = services.signature_requirement  # REGISTRY_REQUIRE_OMS_SIGNATURE
        if require is not None and verdict.verified:
            verdict = await run_in_threadpool(require, verdict)
        entry.update(block=verdict.checked_block, outcome=verdict.reason)
    # A folder store answers with a stat, on the loop; a bucket's answer is a request, off it.
    stored = (
        _stored(services, digest)
        if isinstance(services.store, FileStore)
        else await run_in_threadpool(_stored, services, digest)
    )
    if store and verdict.verified and not stored:
        await run_in_threadpool(import_bytes, services, caller, data, via="verify")
        stored = True
    # Returned as a ready JSONResponse: the route's response_model documents the shape, and
    # validating our own dict again on every request would only cost time.
    return JSONResponse(
        {
            **verdict.to_dict(),
            "stored": stored,
            "model": _model(services, verdict),  # the card's summary is cached: no disk read
            "policy": policy_facts(services.policy, services.settings.confirmations),
        }
    )


@router.get(
    "/policy",
    response_model=PolicyOut,
    summary="The clinic's policy: minimum accuracy, trusted registrants, confirmations",
    responses=responses(401),
    openapi_extra=KEY_OPTIONAL,
)
def policy(services: ServicesDep, caller: Reader) -> Any:
    """What a registered, unrevoked checkpoint must also meet here to be verified. A minimum
    accuracy of 0 means none is enforced; an empty list of trusted registrants means any
    registrar's checkpoint is accepted. Every `POST /verify` answer carries the same object."""
    return policy_facts(services.policy, services.settings.confirmations)


def _verdict(services: Services, data: bytes, digest: Digest) -> Verdict:
    services.checked_headers.inspect(data, digest)  # 422 for anything but a LeNet safetensors
    verdict = services.gate().verdict(digest)
    _model(services, verdict)  # reads the card here, off the event loop, once per card
    return verdict


async def _checkpoint_and_proof(request: Request) -> tuple[bytes, bytes | None]:
    """The checkpoint (multipart ``file`` or the raw body) and, in a form, an optional ``proof``."""
    if not is_multipart(request):
        return await body_or_file(request, "file"), None
    form = await read_form(request, max_files=2)
    try:
        data = await file_bytes(form, "file")
        proof = await file_bytes(form, "proof") if form.getlist("proof") else None
    finally:
        await form.close()
    if not data:
        raise InvalidInput("the upload is empty; send the checkpoint as the multipart field 'file'")
    return data, proof


def _verdict_with_proof(services: Services, data: bytes, digest: Digest, proof: bytes) -> Verdict:
    """The verdict through the batch a proof sent with the file names (checked against its root
    and the chain like any other); a single registration still wins. Never cached: the gate
    judges batched checkpoints only through manifests this service holds."""
    services.checked_headers.inspect(data, digest)
    parsed = BatchProof.parse(proof, source="the proof sent")
    verdict = verify_located(services.client(), digest, [parsed], services.policy)
    _model(services, verdict)
    return verdict


def _stored(services: Services, digest: Digest) -> bool:
    # A verdict is a chain read: a store that cannot be reached costs the answer its "stored"
    # (false: /predict could not load the bytes now), never the answer itself.
    try:
        return services.store.has(digest.hex, "checkpoint")
    except StoreUnavailable as exc:
        log.warning("verify answers stored=false: %s", exc.message)
        return False


def _model(services: Services, verdict: Verdict) -> dict[str, Any]:
    record = verdict.record
    card = CARDS.get(services.store, record.card_digest) if record is not None else None
    return model_facts(card, services.checked_headers.passed(verdict.digest))
