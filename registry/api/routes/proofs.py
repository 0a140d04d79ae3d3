"""GET /models/{digest}/proof: a proof bundle, so a clinic or an auditor can verify with no node.

The service asks its node for the proofs (``registry.chain.proofs``) and serves the bundle as it
was checked; it is the same file ``registry proof`` writes, and is believed by whoever receives it
only from a block hash they trust (``registry verify --bundle``). A node without
``eth_getProof`` is a 502 ``proofs_unsupported``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from registry.api.deps import KEY_OPTIONAL, DigestPath, Reader, ServicesDep
from registry.api.errors import responses
from registry.chain.proofs import make_bundle
from registry.core.digest import Digest

router = APIRouter(prefix="/models", tags=["models"])


@router.get(
    "/{digest}/proof",
    summary="A proof bundle of the checkpoint's record, verifiable with no node",
    response_class=Response,
    responses={
        200: {
            "description": "The bundle (model-registry-proof-bundle/1): block header, account "
            "and storage proofs; for an unregistered digest it proves the absence",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **responses(400, 401, 403, 502, 503),
    },
    openapi_extra=KEY_OPTIONAL,
)
def proof_bundle(
    digest: DigestPath,
    services: ServicesDep,
    caller: Reader,
    block: Annotated[
        int | None,
        Query(ge=0, description="the block to prove at (default: the latest confirmed one)"),
    ] = None,
) -> Response:
    wanted = Digest.parse(digest)
    checked = make_bundle(services.client(), wanted, block)
    return Response(
        checked.bundle.to_json(),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="{wanted.hex[:16]}.proof.json"',
            "X-Proof-Block": str(checked.block_number),
        },
    )
