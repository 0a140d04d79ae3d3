"""POST /models/relay: send a registration a registrar signed offline, with the service's key.

A registrar whose key never touches a network signs the request (``registry
sign-registration``); the hospital's service relays it and pays the gas, when its operator turned
relaying on (``REGISTRY_RELAY_ENABLED``). The caller needs a registrar API key: the service spends
its own gas on the caller's behalf. The request is checked and simulated as ``registry submit``
checks it (``registry.delegated``), so a refusal costs no gas, and every attempt is audited with
who asked, the registrar, the digest and the transaction.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from registry.api.auth import Caller
from registry.api.deps import Registrar, Services, ServicesDep
from registry.api.errors import responses
from registry.api.schemas import RegistrationOut
from registry.core.signed_request import KIND, SignedRegistration
from registry.delegated import submit_signed
from registry.errors import NotFound

router = APIRouter(prefix="/models", tags=["models"])


class RelayInfoOut(BaseModel):
    chain_time: int = Field(description="the latest block's time when the request was checked")
    signer: str | None = Field(
        description="the address that signed (null: the registrar is a contract, whose "
        "ERC-1271 isValidSignature accepted the signature)"
    )
    signature_check: str = Field(description="`ecdsa` or `erc1271`")
    sender: str | None = Field(description="the service's account, which paid the gas")


class RelayOut(RegistrationOut):
    relay: RelayInfoOut


@router.post(
    "/relay",
    response_model=RelayOut,
    status_code=201,
    summary="Send a registration signed offline (EIP-712), paying its gas (registrar key)",
    responses=responses(400, 401, 403, 404, 409, 413, 503, 502),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": f"the request file `registry sign-registration` writes "
                        f"(kind `{KIND}`): EIP-712 typed data, signature, unsigned card",
                        "required": ["kind", "version", "typed_data", "signature"],
                    }
                }
            },
        }
    },
)
async def relay_registration(request: Request, services: ServicesDep, caller: Registrar) -> Any:
    """404 while relaying is off. Refusals name their cause: 400 a malformed request
    (`invalid_registration_request`), one signed for another chain or contract
    (`wrong_signing_domain`), or an expired one (`signature_expired`); 403 a signature that is
    not the registrar's (`invalid_signer`) or a registrar without the role (`missing_role`); 409
    a replayed (`nonce_used`), cancelled (`nonce_cancelled`) or out-of-order (`invalid_nonce`)
    nonce, or a checkpoint already registered. Nothing is sent unless the simulation passed."""
    if not services.settings.relay_enabled:
        raise NotFound(
            "this service does not relay signed registrations; its operator turns relaying on "
            "with REGISTRY_RELAY_ENABLED=true, or send the request yourself with `registry "
            "submit FILE`",
            relay_enabled=False,
        )
    body = await request.body()
    return await run_in_threadpool(_relay, services, caller, body)


def _relay(services: Services, caller: Caller, body: bytes) -> dict[str, Any]:
    with services.audited("relay", caller, registrar=None) as entry:
        signed = SignedRegistration.parse(body, source="the request body")
        reg = signed.registration
        entry.update(digest=str(reg.digest), registrar=reg.registrar, nonce=str(reg.nonce))
        done = submit_signed(services.client, signed, store=services.store)
        entry.update(
            block=done.result.block_number,
            tx=done.result.tx_hash,
            sender=done.preflight.sender,
            outcome="registered",
        )
    return done.to_dict()
