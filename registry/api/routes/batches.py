"""Batches: a manifest accepted here makes its checkpoints verifiable here; batches and manifests
are served to anyone who wants to check a leaf themselves.

``POST /batches`` takes a manifest with read rights, like an import: it anchors nothing, and a
manifest is kept only when the chain anchors its root with exactly this manifest's SHA-256, so
what the service stores stays bounded by what is on chain. From then on ``/verify``, the gate and
downloads judge the manifest's checkpoints through their batch (``registry.index.batches``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from registry.api.auth import Caller
from registry.api.deps import KEY_OPTIONAL, DigestPath, Reader, Services, ServicesDep
from registry.api.errors import responses
from registry.api.schemas import BatchFactsOut
from registry.api.uploads import body_or_file
from registry.chain.reverts import UnknownBatch
from registry.core.batches import BatchRecord, Manifest
from registry.core.digest import Digest
from registry.errors import InvalidInput, NotFound

router = APIRouter(prefix="/batches", tags=["batches"])


class BatchOut(BatchFactsOut):
    manifest_stored: bool = Field(description="whether this service holds the batch's manifest")
    manifest_url: str | None = Field(description="where to download it, when held")


class ManifestAcceptedOut(BatchOut):
    checkpoints_shelved: int = Field(description="checkpoints this manifest newly placed")
    new: bool = Field(description="false when the manifest was held already (200)")


ROOT_PATTERN = r"^0[xX][0-9a-fA-F]{64}$"
RootPath = Annotated[
    str,
    Path(
        description="the batch's Merkle root: 0x and 64 hex digits",
        json_schema_extra={"pattern": ROOT_PATTERN},
    ),
]

MANIFEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The manifest `registry register --batch` wrote: a multipart part named "
        "`manifest`, or the raw bytes.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["manifest"],
                    "properties": {"manifest": {"type": "string", "format": "binary"}},
                }
            },
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


def parse_root(text: str) -> bytes:
    """A root from a path: 0x and 64 hex digits, else a 400 naming the value."""
    value = text.strip()
    if len(value) != 66 or value[:2] not in ("0x", "0X"):
        raise InvalidInput(
            f"batch root {value[:80]!r} is not 0x and 64 hex digits; give the root that "
            "`registry register --batch` printed",
            root=value[:80],
        )
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise InvalidInput(
            f"batch root {value[:80]!r} is not 0x and 64 hex digits",
            root=value[:80],
        ) from None


def _facts(services: Services, batch: BatchRecord) -> dict[str, Any]:
    held = services.store.has(batch.manifest_digest.hex, "manifest")
    return {
        **batch.to_dict(),
        "manifest_stored": held,
        "manifest_url": f"/batches/manifests/{batch.manifest_digest.hex}" if held else None,
    }


@router.post(
    "",
    summary="Keep a batch's manifest, so that its checkpoints verify here",
    response_model=ManifestAcceptedOut,
    responses=responses(400, 401, 404, 413, 503),
    openapi_extra={**MANIFEST_BODY, **KEY_OPTIONAL},
    status_code=201,
)
async def post_manifest(request: Request, services: ServicesDep, caller: Reader) -> Any:
    """The manifest is read strictly (every hash of the dump checked), its root must be an
    anchored batch (404 `unknown_batch` otherwise) and its SHA-256 the one anchored with it (400
    otherwise); only then is it stored and its checkpoints shelved. 201 new, 200 already held.
    Nothing is stored on any refusal."""
    data = await body_or_file(request, "manifest")
    return await run_in_threadpool(_accept, services, caller, data)


def _accept(services: Services, caller: Caller, data: bytes) -> Response:
    with services.audited("manifest", caller) as entry:
        manifest = Manifest.parse(data, source="the manifest sent")
        root = "0x" + manifest.root.hex()
        entry.update(digest=str(manifest.digest), root=root)
        batch, block = services.client().batch(manifest.root)
        entry.update(block=block)
        if batch is None:
            raise UnknownBatch(manifest.root)
        if batch.manifest_digest != manifest.digest:
            raise InvalidInput(
                f"the manifest sent hashes to {manifest.digest}, but batch {root} was anchored "
                f"with the manifest {batch.manifest_digest}; send that manifest (its bytes "
                "exactly as `registry register --batch` wrote them)",
                manifest_digest=str(manifest.digest),
                anchored=str(batch.manifest_digest),
                root=root,
            )
        held = services.store.has(manifest.digest.hex, "manifest")
        services.store.put(data, "manifest")
        added = services.batches.add(manifest)
        entry.update(outcome="stored" if not held else "already_stored")
    body = {**_facts(services, batch), "checkpoints_shelved": added, "new": not held}
    return Response(
        json.dumps(body), status_code=200 if held else 201, media_type="application/json"
    )


@router.get(
    "/manifests/{digest}",
    summary="Download a stored batch manifest by its SHA-256",
    response_class=Response,
    responses={
        200: {
            "description": "The manifest bytes, exactly as anchored",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **responses(400, 401, 404, 503),
    },
    openapi_extra=KEY_OPTIONAL,
)
def get_manifest(digest: DigestPath, services: ServicesDep, caller: Reader) -> Response:
    """The bytes are re-hashed on the way out of the store; 404 when this service holds none."""
    wanted = Digest.parse(digest)
    if not services.store.has(wanted.hex, "manifest"):
        raise NotFound(
            f"this service holds no batch manifest {wanted}; send it with POST /batches",
            digest=str(wanted),
        )
    return Response(
        services.store.get(wanted.hex, "manifest"),
        media_type="application/json",
        headers={"X-Manifest-Digest": str(wanted)},
    )


@router.get(
    "/{root}",
    summary="A batch as the chain knows it: registrant, block, time, count, manifest, revocation",
    response_model=BatchOut,
    responses=responses(400, 401, 404, 503),
    openapi_extra=KEY_OPTIONAL,
)
def get_batch(root: RootPath, services: ServicesDep, caller: Reader) -> Any:
    """Read from the chain on every request. When this service's store holds the batch's
    manifest (one sent here, or put in a shared store by `registry register --batch`), its
    checkpoints are shelved on the way, so they verify here from then on."""
    wanted = parse_root(root)
    batch, _ = services.client().batch(wanted)
    if batch is None:
        raise UnknownBatch(wanted)
    facts = _facts(services, batch)
    if facts["manifest_stored"] and not services.batches.holds(wanted):
        manifest = services.batches.manifest(batch.manifest_digest)
        if manifest.root == wanted:
            services.batches.add(manifest)
    return facts
