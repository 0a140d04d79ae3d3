"""Evaluator attestations: an independent party's own measurement of a registered checkpoint.

A registrant's accuracy is a claim by the party that wants the model used. An evaluator (an
account the registry admin gave the evaluator role, never the model's registrant) re-measures it
and anchors what it found: an accuracy, the digest of the test set it measured on (the anchored
one, or its own) and optionally the digest of its report. One standing attestation per evaluator
and checkpoint; the evaluator may withdraw it. The chain keeps the numbers in storage and the
digests in the ``AttestationMade`` event; ``registry.chain.attestations`` rebuilds this value
from both. Whether an attestation counts for a clinic is ``registry.core.policy``'s question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from registry.core.digest import Digest
from registry.core.records import ModelRecord
from registry.core.times import iso_utc

TestSetKind = Literal["anchored", "own"]


@dataclass(frozen=True, slots=True)
class Attestation:
    """One evaluator's measurement of checkpoint ``digest``, standing or withdrawn."""

    digest: Digest
    evaluator: str  # EIP-55 checksummed
    accuracy_bps: int
    test_set_digest: Digest
    report_digest: Digest | None  # None: no report published
    attested_at: int
    attested_block: int
    withdrawn_at: int | None = None  # None: standing
    tx_hash: str | None = None

    @property
    def withdrawn(self) -> bool:
        return self.withdrawn_at is not None

    def test_set(self, record: ModelRecord) -> TestSetKind:
        """Whether it was measured on the test set the registrant's claim names, or another."""
        return "anchored" if self.test_set_digest == record.test_set_digest else "own"

    def to_dict(self, record: ModelRecord) -> dict[str, Any]:
        return {
            "digest": str(self.digest),
            "evaluator": self.evaluator,
            "accuracy_bps": self.accuracy_bps,
            "accuracy_percent": self.accuracy_bps / 100,
            "test_set_digest": str(self.test_set_digest),
            "test_set": self.test_set(record),
            "report_digest": str(self.report_digest) if self.report_digest else None,
            "attested_at": iso_utc(self.attested_at),
            "attested_block": self.attested_block,
            "tx_hash": self.tx_hash,
            "withdrawn": self.withdrawn,
            "withdrawn_at": iso_utc(self.withdrawn_at) if self.withdrawn_at is not None else None,
        }

    def describe(self, record: ModelRecord) -> str:
        """One line for people: who, what, on which test set, when, and whether withdrawn."""
        kind = "anchored test set" if self.test_set(record) == "anchored" else "own test set"
        line = (
            f"{self.evaluator}  {self.accuracy_bps / 100:.2f} % on the {kind} "
            f"{self.test_set_digest.short}, at {iso_utc(self.attested_at)}"
        )
        if self.report_digest is not None:
            line += f", report {self.report_digest}"
        if self.withdrawn_at is not None:
            line += f"  WITHDRAWN at {iso_utc(self.withdrawn_at)}"
        return line
