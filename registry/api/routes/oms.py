"""Model-signing bundles for the gate: ``POST /models/{digest}/oms-bundle`` (read rights).

With ``REGISTRY_REQUIRE_OMS_SIGNATURE`` on, the gate loads a model only when a bundle kept beside
its checkpoint is a trusted key's OpenSSF model-signing signature of its digest. This is how a
bundle gets there. Like an import it needs no registrar power, and what is kept is bounded by what
is anchored and trusted: the bundle must verify with one of ``REGISTRY_TRUSTED_OMS_KEYS``, sign
exactly this digest (one file, whole-file SHA-256), and the digest must be registered and valid
under the clinic's policy. Each upload is one audit entry (event ``oms_bundle``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from registry.api.auth import Caller
from registry.api.deps import KEY_OPTIONAL, DigestPath, Reader, Services, ServicesDep
from registry.api.errors import responses
from registry.api.uploads import body_or_file
from registry.core.digest import Digest
from registry.gate import refusal
from registry.oms import check_bundle

router = APIRouter(prefix="/models", tags=["model-signing"])


class OmsBundleOut(BaseModel):
    digest: str
    bundle: str = Field(description="the bundle's own SHA-256, its name beside the checkpoint")
    imported: bool = Field(description="false: the service already held this bundle")
    key_hint: str = Field(description="SHA-256 of the signer's PEM public key")
    claim: dict[str, Any] | None = Field(
        description="the registration the statement carries, when `registry export-signature` "
        "wrote it; informative (the chain is what the gate reads)"
    )
    verdict: dict[str, Any] = Field(description="the verdict that allowed keeping it")


def keep_bundle(services: Services, caller: Caller, digest: Digest, data: bytes) -> dict[str, Any]:
    """Check the bundle against the trusted keys, the digest and the chain, then keep it."""
    with services.audited("oms_bundle", caller, digest=str(digest)) as entry:
        signed = check_bundle(data, services.oms_keys, digest, source="the uploaded bundle")
        verdict = services.gate().verdict(digest)
        entry["block"] = verdict.checked_block
        if not verdict.verified:
            raise refusal(verdict)
        name, new = services.oms_bundles.add(digest.hex, data)
        entry.update(bundle=name, outcome="imported" if new else "already_stored")
    return {
        "digest": str(digest),
        "bundle": name,
        "imported": new,
        "key_hint": signed.key_hint,
        "claim": signed.claim,
        "verdict": verdict.to_dict(),
    }


@router.post(
    "/{digest}/oms-bundle",
    response_model=OmsBundleOut,
    status_code=201,
    summary="Keep an OpenSSF model-signing bundle for a checkpoint (read rights)",
    responses={
        200: {"model": OmsBundleOut, "description": "Already held; nothing changed"},
        **responses(400, 401, 403, 413, 503),
    },
    openapi_extra={
        **KEY_OPTIONAL,
        "requestBody": {
            "required": True,
            "description": "The bundle `model_signing sign key` wrote (a Sigstore bundle, JSON): "
            "a multipart part `bundle`, or the raw body.",
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["bundle"],
                        "properties": {"bundle": {"type": "string", "format": "binary"}},
                    }
                },
                "application/json": {"schema": {"type": "object"}},
            },
        },
    },
)
async def upload_oms_bundle(
    digest: DigestPath, request: Request, response: Response, services: ServicesDep, caller: Reader
) -> Any:
    """400 `invalid_oms_bundle` for what is not a key-based model-signing bundle; 403
    `oms_signature_refused` (`details.problem`) for a bundle no trusted key signed
    (`untrusted_key`, `bad_signature`), one over other bytes (`digest_mismatch`), a shard or
    folder manifest, another hash algorithm; 403 `not_verified` for a digest that is not
    registered and valid under the policy. Nothing is kept on any refusal."""
    wanted = Digest.parse(digest)
    data = await body_or_file(request, "bundle")
    result = await run_in_threadpool(keep_bundle, services, caller, wanted, data)
    if not result["imported"]:
        response.status_code = 200
    return result
