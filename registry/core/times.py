"""The registry's three ways of writing a moment, each named for where it is read.

Records and revert messages give chain timestamps as ISO 8601 in UTC; the audit log stamps its
entries with microseconds so that entries of one second stay ordered to the eye; sentences for
people say the date and time in words a reader does not have to parse. The formats are part of
the API's responses and of the audit log's format: change them only together with their readers.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["human_utc", "iso_utc", "now_iso_utc"]


def iso_utc(ts: int) -> str:
    """A chain timestamp (seconds since the epoch) as ``2025-01-01T00:00:00Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def now_iso_utc() -> str:
    """The current time as ``2025-01-01T00:00:00.000000Z`` (always six fraction digits)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def human_utc(ts: int) -> str:
    """A chain timestamp for a sentence: ``2025-01-01 00:00:00 UTC``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
