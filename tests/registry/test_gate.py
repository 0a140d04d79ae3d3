"""Gate.fresh_verdict: the answer an event loop may reuse without asking the chain; and the
format check, which refuses a registered checkpoint that would only fail at inference."""

from __future__ import annotations

import math
import struct
import time
from typing import Any

import pytest
from apikit import make_checkpoint
from chainkit import CARD, TEST_SET, digest, request

from registry.core.digest import Digest, digest_bytes
from registry.core.records import RegisterRequest, RevocationReason
from registry.errors import MalformedCheckpoint
from registry.gate import Gate


def registered(memory: Any, label: str) -> Digest:
    memory.client.register(request(label))
    return digest(label)


def test_fresh_verdict_is_the_verified_answer_until_the_ttl_and_never_asks_the_chain(
    memory: Any,
) -> None:
    gate = Gate(memory.client, validity_ttl_s=0.2)
    model = registered(memory, "a1")
    assert gate.fresh_verdict(model) is None  # nothing read yet

    verdict = gate.verdict(model)
    assert verdict.verified
    asked: list[Digest] = []
    gate.check = lambda d: asked.append(d)  # type: ignore[assignment, method-assign, func-returns-value]
    assert gate.fresh_verdict(model) is verdict
    assert asked == []

    time.sleep(0.25)
    assert gate.fresh_verdict(model) is None
    assert asked == []


def test_fresh_verdict_never_holds_a_negative_answer(memory: Any) -> None:
    gate = Gate(memory.client, validity_ttl_s=10)
    unknown = digest("b2")
    assert not gate.verdict(unknown).verified
    assert gate.fresh_verdict(unknown) is None

    revoked = registered(memory, "c3")
    assert gate.verdict(revoked).verified
    memory.client.revoke(revoked, RevocationReason.SAFETY_ISSUE)
    gate.forget(revoked)
    assert gate.verdict(revoked).reason == "revoked"
    assert gate.fresh_verdict(revoked) is None


# --- the format check, at the gate ------------------------------------------------------------


def _poisoned(checkpoint: bytes, value: float) -> bytes:
    """``checkpoint`` with its last weight (the last tensor's last float) set to ``value``."""
    return checkpoint[:-4] + struct.pack("<f", value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_registered_checkpoint_with_non_finite_weights_is_refused_before_loading(
    memory: Any, value: float
) -> None:
    data = _poisoned(make_checkpoint(seed=31), value)
    checked_digest = digest_bytes(data)
    memory.client.register(RegisterRequest(checked_digest, 9_000, TEST_SET, CARD))
    gate = Gate(memory.client)
    assert gate.check(checked_digest).verified  # only the format check stands in the way

    with pytest.raises(MalformedCheckpoint) as info:
        gate.admit(data)

    # The writer lays tensors out in name order: fc3.weight holds the file's last bytes.
    assert (info.value.problem, info.value.key) == ("non_finite_weights", "fc3.weight")
    assert not gate.loaded(checked_digest)
