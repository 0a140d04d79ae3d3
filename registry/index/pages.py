"""Catalogue pages: the query (filters, a limit, a cursor), the page, and paging from the chain.

A page is ordered by registration block, then log index: the order the chain gives, which new
registrations only extend, so a reader walking pages sees every record once while others
register. The cursor is opaque to readers: base64url of the last sort key of the page before.
Where there is no index, ``chain_page`` pages straight from the chain, one lookup per record
shown, not per record registered.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from registry.chain.abi import RegisteredEvent
from registry.chain.client import RegistryClient
from registry.chain.events import Topic
from registry.core.records import ModelRecord
from registry.errors import InvalidInput
from registry.index.database import Filters

DEFAULT_LIMIT = 100
MAX_LIMIT = 500

_SORT_KEY = re.compile(r"(\d{1,15})\.(\d{1,9})")


def encode_cursor(key: tuple[int, int]) -> str:
    return base64.urlsafe_b64encode(f"{key[0]}.{key[1]}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The sort key a cursor names; InvalidInput if it is not one this service handed out."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    match = _SORT_KEY.fullmatch(text)
    if match is None:
        raise InvalidInput(
            f"cursor {cursor[:64]!r} is not one this service handed out; pass the `next` link "
            "of the page before as it came, or no cursor for the first page",
            cursor=cursor[:64],
        )
    return int(match[1]), int(match[2])


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(
            f"limit {limit} is out of range: a page holds 1 to {MAX_LIMIT} records; "
            "follow the `next` link for more",
            limit=limit,
            max_limit=MAX_LIMIT,
        )
    return limit


@dataclass(frozen=True)
class PageQuery:
    """Which records, how many, and after which sort key (None: from the first)."""

    filters: Filters = field(default_factory=Filters)
    limit: int = DEFAULT_LIMIT
    after: tuple[int, int] | None = None

    @classmethod
    def parse(cls, filters: Filters, limit: int, cursor: str | None) -> PageQuery:
        return cls(filters, check_limit(limit), decode_cursor(cursor) if cursor else None)


@dataclass(frozen=True)
class Page:
    """Records in chain order, the cursor of the next page (None on the last), and the newest
    block the answer knows of (None when the index has not read anything yet)."""

    records: list[ModelRecord]
    next_cursor: str | None
    indexed_to_block: int | None

    @classmethod
    def of(
        cls, rows: list[tuple[ModelRecord, tuple[int, int]]], limit: int, indexed_to: int | None
    ) -> Page:
        """The page of ``rows`` read with one more than ``limit`` (so "more" needs no count)."""
        shown = rows[:limit]
        more = len(rows) > limit
        return cls(
            [record for record, _ in shown],
            encode_cursor(shown[-1][1]) if more and shown else None,
            indexed_to,
        )


def chain_page(client: RegistryClient, query: PageQuery) -> Page:
    """A page read from the chain itself: registration logs (one query), then a lookup of each
    record until the page is full. The card name is not on chain: a name filter is refused."""
    if query.filters.name is not None:
        raise InvalidInput(
            "the name filter needs the event index (the card's name is not on chain); "
            "run `registry serve`, or list without it",
            name=query.filters.name,
        )
    head = client.head()
    topics: list[Topic] = [client.abi.registered_topic]
    logs = client.events.logs(topics, 0, head)
    events = sorted(
        (RegisteredEvent.from_log(entry) for entry in logs),
        key=lambda e: (e.block_number, e.log_index),
    )
    rows: list[tuple[ModelRecord, tuple[int, int]]] = []
    for event in events:
        key = (event.block_number, event.log_index)
        if query.after is not None and key <= query.after:
            continue
        if query.filters.registrant not in (None, event.registrant):
            continue
        record = client.get(event.digest)
        # The record's own block: a reorg may have moved it since the log was read.
        if record is None or record.registered_block != event.block_number:
            continue
        if query.filters.matches(record):
            rows.append((record, key))
            if len(rows) > query.limit:
                break
    return Page.of(rows, query.limit, head)
