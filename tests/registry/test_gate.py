"""Gate.fresh_verdict: the answer an event loop may reuse without asking the chain."""

from __future__ import annotations

import time
from typing import Any

from chainkit import digest, request

from registry.core.digest import Digest
from registry.core.records import RevocationReason
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
