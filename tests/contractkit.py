"""What the tests of the contract's attestation, audit-anchor and signed-registration writes share.

These tests drive the contract with raw writes so that its own checks are reached, whatever the
client's typed methods check first. ``send`` gives each write an explicit gas limit, generous
enough that a refusal is always the contract's error and never an out-of-gas.
"""

from __future__ import annotations

from typing import Any

from registry.chain.abi import to_hex

# IModelRegistry.Role.Evaluator, written out so a reordered enum fails these tests.
EVALUATOR = 3
# Enough for any of these writes; a refusal must come from the contract's checks.
GAS = 300_000


def send(client: Any, name: str, *args: Any) -> dict[str, Any]:
    """Send ``name(*args)`` from ``client``'s account and return the confirmed receipt; a revert
    raises the contract's typed error."""
    data = client.abi.encode_call(name, *args)
    receipt: dict[str, Any] = client.transactions.execute(
        {"to": client.address, "data": to_hex(data), "gas": GAS}
    )
    return receipt


def grant(backend: Any, role: int, account: str) -> None:
    """The admin gives ``account`` the role numbered ``role``."""
    send(backend.client, "grantRole", role, account)
