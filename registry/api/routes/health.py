"""``GET /health``: can this service verify anything right now?"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from registry.api.anchoring import get_anchoring
from registry.api.deps import Services, ServicesDep
from registry.api.disclosure import public_error
from registry.api.errors import RETRY_AFTER_S
from registry.api.schemas import HealthOut
from registry.chain.connection import LOCAL_NODE
from registry.core.endpoint import redact_endpoint
from registry.errors import ChainError, ChainUnavailable, ConfigurationError, WrongChain

router = APIRouter(tags=["service"])


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Chain reachable, right chain and contract, gate open",
    responses={
        503: {
            "model": HealthOut,
            "description": "The chain cannot be asked, or it is the wrong chain or contract: "
            "the gate is closed. Same body, with `error` set ({code, message, details}).",
        }
    },
)
def health(services: ServicesDep, request: Request) -> Any:
    """200 when the chain answers with the expected chain id and contract code; 503 otherwise.

    The identity is checked afresh on every call (not from the client's cache), so this is the
    place to watch when the node restarts.
    """
    try:
        client = services.client()
        identity = client.check_identity(force=True)
        head = client.head()
    except (ChainError, ConfigurationError) as exc:
        known = services.known_client
        return JSONResponse(
            {
                "status": "unavailable",
                "chain_reachable": not isinstance(exc, ChainUnavailable | ConfigurationError),
                "endpoint": known.endpoint if known else _configured_endpoint(services),
                "chain_id": exc.actual if isinstance(exc, WrongChain) else None,
                "contract": known.address if known else services.settings.contract_address,
                "latest_block": None,
                "gate_open": False,
                "error": public_error(exc),
                "audit_anchor": _anchoring(request),
            },
            status_code=503,
            headers={"Retry-After": RETRY_AFTER_S},
        )
    return {
        "status": "ok",
        "chain_reachable": True,
        "endpoint": client.endpoint,
        "chain_id": identity.chain_id,
        "contract": identity.address,
        "latest_block": head,
        "gate_open": True,
        "error": None,
        "audit_anchor": _anchoring(request),
    }


def _anchoring(request: Request) -> dict[str, Any]:
    # The anchoring address is public (it is on chain); its problems name no path or secret.
    return get_anchoring(request).status()


def _configured_endpoint(services: Services) -> str:
    # This answer is anonymous even when reads need a key: the URL's credentials stay out.
    rpc_url = services.settings.rpc_url
    return redact_endpoint(rpc_url) if rpc_url is not None else LOCAL_NODE
