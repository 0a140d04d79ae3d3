"""What the contract and chain tests build their registrations from: digests named by a label, a
fixed test set and card, and a raw ``register`` that bypasses RegisterRequest's own checks so the
contract's are the ones exercised."""

from __future__ import annotations

import hashlib
from typing import Any

from registry.core.digest import Digest
from registry.core.records import RegisterRequest

ZERO32 = bytes(32)
ZERO_ADDRESS = "0x" + "00" * 20
TEST_SET = Digest(hashlib.sha256(b"test split").hexdigest())
CARD = Digest(hashlib.sha256(b"model card").hexdigest())


def digest(label: str) -> Digest:
    return Digest(hashlib.sha256(label.encode()).hexdigest())


def request(label: str, accuracy: int = 9_731, parent: Digest | None = None) -> RegisterRequest:
    return RegisterRequest(digest(label), accuracy, TEST_SET, CARD, parent)


def raw_register(
    client: Any,
    d: bytes,
    accuracy: int = 9_731,
    test_set: bytes = TEST_SET.raw,
    card: bytes = CARD.raw,
    parent: bytes = ZERO32,
) -> dict[str, Any]:
    """A register transaction without RegisterRequest's checks, so that the contract's run."""
    result: dict[str, Any] = client.transact("register", d, accuracy, test_set, card, parent)
    return result
