"""Typed records that travel between the chain client, verification, the CLI and the API.

"Model" means the CNN checkpoint here. Everything is immutable; ``to_dict`` gives the JSON form
used by ``--json`` output and the HTTP API (digests as ``sha256:<hex>``, times as ISO-8601 UTC).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

from registry.core.digest import Digest
from registry.core.times import iso_utc
from registry.errors import InvalidInput

MAX_ACCURACY_BPS = 10_000


class RevocationReason(enum.IntEnum):
    """Reason codes the contract accepts (documented at ``IModelRegistry.revoke``)."""

    SUPERSEDED = 1
    SAFETY_ISSUE = 2
    PERFORMANCE_DEGRADATION = 3
    DATA_PROBLEM = 4
    SECURITY_COMPROMISE = 5
    REGULATORY = 6
    REGISTERED_IN_ERROR = 7
    OTHER = 255

    @classmethod
    def parse(cls, value: object) -> RevocationReason:
        """Accept a code (``2``) or a name in any case with ``-``/``_``/spaces (``safety-issue``)."""
        if isinstance(value, RevocationReason):
            return value
        text = str(value).strip()
        if text.isdigit():
            try:
                return cls(int(text))
            except ValueError:
                pass
        else:
            key = text.upper().replace("-", "_").replace(" ", "_")
            if key in cls.__members__:
                return cls[key]
        choices = ", ".join(f"{m.value}={m.label}" for m in cls)
        raise InvalidInput(
            f"unknown revocation reason {value!r}; use one of: {choices}", reason=str(value)
        )

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class Role(enum.IntEnum):
    """Mirror of ``IModelRegistry.Role``."""

    REGISTRAR = 1
    REVOKER = 2
    EVALUATOR = 3  # attests its own measurements of others' checkpoints

    @classmethod
    def parse(cls, value: object) -> Role:
        text = str(value).strip().upper()
        if text in cls.__members__:
            return cls[text]
        raise InvalidInput(
            f"unknown role {value!r}; use 'registrar', 'revoker' or 'evaluator'", role=str(value)
        )


def check_accuracy_bps(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ACCURACY_BPS:
        raise InvalidInput(
            f"accuracy must be an integer number of basis points from 0 to {MAX_ACCURACY_BPS} "
            f"(9731 = 97.31 %), got {value!r}",
            accuracy_bps=str(value),
        )
    return value


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    """What a registrar anchors: the checkpoint digest with its evidence."""

    digest: Digest
    accuracy_bps: int
    test_set_digest: Digest
    card_digest: Digest
    parent: Digest | None = None

    def __post_init__(self) -> None:
        check_accuracy_bps(self.accuracy_bps)
        for name in ("digest", "test_set_digest", "card_digest"):
            if getattr(self, name).is_zero:
                raise InvalidInput(f"{name} must not be the zero digest", field=name)
        if self.parent is not None and self.parent == self.digest:
            raise InvalidInput("a checkpoint cannot be its own parent", parent=str(self.parent))


@dataclass(frozen=True, slots=True)
class Revocation:
    revoked_at: int
    block_number: int
    reason: RevocationReason
    replacement: Digest | None
    revoker: str | None = None
    tx_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "revoked_at": iso_utc(self.revoked_at),
            "block_number": self.block_number,
            "reason": self.reason.label,
            "reason_code": int(self.reason),
            "replacement": str(self.replacement) if self.replacement else None,
            "revoker": self.revoker,
            "tx_hash": self.tx_hash,
        }


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """One anchored checkpoint, rebuilt from the contract's storage and its events."""

    digest: Digest
    registrant: str
    registered_at: int
    registered_block: int
    accuracy_bps: int
    test_set_digest: Digest
    card_digest: Digest
    parent: Digest | None
    registration_tx: str | None = None
    revocation: Revocation | None = None

    @property
    def valid(self) -> bool:
        return self.revocation is None

    @property
    def accuracy_percent(self) -> float:
        return self.accuracy_bps / 100

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": str(self.digest),
            "registrant": self.registrant,
            "registered_at": iso_utc(self.registered_at),
            "registered_block": self.registered_block,
            "registration_tx": self.registration_tx,
            "accuracy_bps": self.accuracy_bps,
            "accuracy_percent": self.accuracy_percent,
            "test_set_digest": str(self.test_set_digest),
            "card_digest": str(self.card_digest),
            "parent": str(self.parent) if self.parent else None,
            "valid": self.valid,
            "revocation": self.revocation.to_dict() if self.revocation else None,
        }


VerdictReason = Literal["verified", "unknown", "revoked", "policy", "unconfirmed"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to "may this exact file be used?". "No" is data; "can't tell" is an exception."""

    verified: bool
    reason: VerdictReason
    digest: Digest
    chain_id: int
    contract: str
    checked_block: int
    record: ModelRecord | None = None
    detail: str = ""
    policy_failures: tuple[str, ...] = field(default=())
    # A checkpoint judged through a batch: ``BatchPosition.to_dict()`` (root, position, the
    # batch's chain facts), as plain data since the batch types build on this module.
    batch: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "reason": self.reason,
            "detail": self.detail,
            "digest": str(self.digest),
            "chain_id": self.chain_id,
            "contract": self.contract,
            "checked_block": self.checked_block,
            "policy_failures": list(self.policy_failures),
            "record": self.record.to_dict() if self.record else None,
            "batch": self.batch,
        }


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    """A registration that landed, or one found already on chain with identical fields."""

    record: ModelRecord
    tx_hash: str | None
    block_number: int
    gas_used: int | None
    already_registered: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "tx_hash": self.tx_hash,
            "block_number": self.block_number,
            "gas_used": self.gas_used,
            "already_registered": self.already_registered,
            "record": self.record.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One contract event that concerns a checkpoint, in chain order."""

    kind: Literal["registered", "revoked"]
    digest: Digest
    block_number: int
    tx_hash: str
    log_index: int
    actor: str
    timestamp: int
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "digest": str(self.digest),
            "time": iso_utc(self.timestamp),
            "block_number": self.block_number,
            "tx_hash": self.tx_hash,
            "log_index": self.log_index,
            "actor": self.actor,
            **self.details,
        }
