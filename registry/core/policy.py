"""A clinic's policy: the conditions a record must meet beyond "anchored and not revoked"."""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.config import Settings
from registry.core.records import ModelRecord


@dataclass(frozen=True)
class Policy:
    """A clinic's extra conditions on top of "anchored and not revoked"."""

    min_accuracy_bps: int = 0
    trusted_registrants: frozenset[str] = field(default_factory=frozenset)  # lowercase

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(settings.min_accuracy_bps, frozenset(settings.trusted_registrants))

    def failures(self, record: ModelRecord) -> tuple[str, ...]:
        found = []
        if record.accuracy_bps < self.min_accuracy_bps:
            found.append(
                f"accuracy {record.accuracy_bps / 100:.2f} % is below the clinic's minimum of "
                f"{self.min_accuracy_bps / 100:.2f} %"
            )
        if self.trusted_registrants and record.registrant.lower() not in self.trusted_registrants:
            found.append(f"registrant {record.registrant} is not in the clinic's trusted list")
        return tuple(found)
