"""A clinic's policy: the conditions a record must meet beyond "anchored and not revoked".

Everything here is a pure function of a record (and, when the clinic asks for them, the trusted
evaluators' attestations of it): the chain is read by ``registry.verify``, which hands the
answers over, so each condition can be checked, and tested, without a node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from registry.config import Settings
from registry.core.address import to_checksum_address
from registry.core.attestations import Attestation
from registry.core.records import ModelRecord

# Why a trusted evaluator's attestation did not count.
NotCountedWhy = Literal["none", "withdrawn", "below minimum", "outside tolerance"]


def _percent(bps: int) -> str:
    return f"{bps / 100:.2f} %"


@dataclass(frozen=True, slots=True)
class NotCounted:
    """A trusted evaluator whose attestation did not count, and why (``why``: a code; ``detail``:
    the sentence, with the numbers)."""

    evaluator: str
    why: NotCountedWhy
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"evaluator": self.evaluator, "why": self.why, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class AttestationCount:
    """The trusted evaluators' attestations of one record, counted against the clinic's ``k``."""

    needed: int
    counted: tuple[str, ...]  # evaluators whose attestation counts
    not_counted: tuple[NotCounted, ...]  # every other trusted evaluator, in the policy's order

    @property
    def met(self) -> bool:
        return len(self.counted) >= self.needed

    def failure(self) -> str | None:
        """The refusal's sentence, or None when enough trusted evaluators attested."""
        if self.met:
            return None
        if not self.counted and not self.not_counted:
            return (
                f"too few trusted attestations: {self.needed} needed, 0 found; the clinic trusts "
                "no evaluator (set REGISTRY_TRUSTED_EVALUATORS)"
            )
        line = f"too few trusted attestations: {self.needed} needed, {len(self.counted)} found"
        if self.not_counted:
            line += " (" + "; ".join(f"{n.evaluator}: {n.detail}" for n in self.not_counted) + ")"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {
            "needed": self.needed,
            "found": len(self.counted),
            "counted": list(self.counted),
            "not_counted": [n.to_dict() for n in self.not_counted],
        }


@dataclass(frozen=True)
class Policy:
    """A clinic's extra conditions on top of "anchored and not revoked"."""

    min_accuracy_bps: int = 0
    trusted_registrants: frozenset[str] = field(default_factory=frozenset)  # lowercase
    # Attestations: 0 = not required. Evaluators lowercase, each once, in the settings' order.
    min_attestations: int = 0
    trusted_evaluators: tuple[str, ...] = ()
    attestation_tolerance_bps: int = 100

    def __post_init__(self) -> None:
        # One evaluator listed twice must not count twice.
        unique = tuple(dict.fromkeys(e.lower() for e in self.trusted_evaluators))
        object.__setattr__(self, "trusted_evaluators", unique)

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            settings.min_accuracy_bps,
            frozenset(settings.trusted_registrants),
            settings.min_attestations,
            tuple(settings.trusted_evaluators),
            settings.attestation_tolerance_bps,
        )

    @property
    def needs_attestations(self) -> bool:
        return self.min_attestations > 0

    def failures(self, record: ModelRecord) -> tuple[str, ...]:
        """The conditions on the record itself that it fails (attestations aside)."""
        found = []
        if record.accuracy_bps < self.min_accuracy_bps:
            found.append(
                f"accuracy {record.accuracy_bps / 100:.2f} % is below the clinic's minimum of "
                f"{self.min_accuracy_bps / 100:.2f} %"
            )
        if self.trusted_registrants and record.registrant.lower() not in self.trusted_registrants:
            found.append(f"registrant {record.registrant} is not in the clinic's trusted list")
        return tuple(found)

    def count_attestations(
        self, record: ModelRecord, found: Mapping[str, Attestation | None]
    ) -> AttestationCount:
        """Which trusted evaluators' attestations of ``record`` count.

        ``found`` maps a trusted evaluator (any case) to its attestation of the record, None or
        absent where it has none. One counts when it stands, attests an accuracy at least the
        clinic's minimum and, when measured on the anchored test set, lies within
        ``attestation_tolerance_bps`` of the registrant's claim (on another test set the numbers
        are not comparable, so only the minimum applies). Attestations of other records, or by
        evaluators the clinic does not trust, are ignored.
        """
        by_evaluator = {address.lower(): a for address, a in found.items()}
        counted: list[str] = []
        not_counted: list[NotCounted] = []
        for evaluator in self.trusted_evaluators:
            attestation = by_evaluator.get(evaluator)
            if attestation is not None and attestation.digest != record.digest:
                attestation = None
            problem = self._not_counting(record, attestation)
            name = to_checksum_address(evaluator)  # as the chain and `registry show` write it
            if problem is None:
                counted.append(name)
            else:
                not_counted.append(NotCounted(name, *problem))
        return AttestationCount(self.min_attestations, tuple(counted), tuple(not_counted))

    def _not_counting(
        self, record: ModelRecord, attestation: Attestation | None
    ) -> tuple[NotCountedWhy, str] | None:
        if attestation is None:
            return "none", "no attestation"
        if attestation.withdrawn:
            return "withdrawn", "its attestation was withdrawn"
        if attestation.accuracy_bps < self.min_accuracy_bps:
            return "below minimum", (
                f"attested {_percent(attestation.accuracy_bps)}, below the clinic's minimum of "
                f"{_percent(self.min_accuracy_bps)}"
            )
        difference = abs(attestation.accuracy_bps - record.accuracy_bps)
        if (
            attestation.test_set(record) == "anchored"
            and difference > self.attestation_tolerance_bps
        ):
            return "outside tolerance", (
                f"attested {_percent(attestation.accuracy_bps)} on the anchored test set, "
                f"{difference} bps from the claimed {_percent(record.accuracy_bps)} (tolerance "
                f"{self.attestation_tolerance_bps} bps)"
            )
        return None

    def attestations_unreadable(self, why: str) -> tuple[str, ...]:
        """The attestation condition where no attestation can be read (``why``: a batched
        checkpoint, a proof bundle): failed when any is required, never assumed met."""
        if not self.needs_attestations:
            return ()
        return (f"too few trusted attestations: {self.min_attestations} needed, 0 found ({why})",)

    def attestation_failures(
        self, record: ModelRecord, found: Mapping[str, Attestation | None]
    ) -> tuple[str, ...]:
        """The attestation condition's refusal, if it fails; nothing when none is required."""
        if not self.needs_attestations:
            return ()
        failure = self.count_attestations(record, found).failure()
        return () if failure is None else (failure,)
