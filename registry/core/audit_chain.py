"""The audit log's line format and its keyed hash chain: how a line is hashed, and how a whole
log is checked.

A compliance officer must be able to ask "which model answered this request, on what evidence,
and was it valid then?" long after the fact, and trust that nobody rewrote the answer. Each line
therefore carries the SHA-256 of the line before it (``prev``) and a MAC of its own canonical
content (``hash``), keyed with a secret kept outside the log (``audit_key``): editing, deleting,
inserting or reordering lines breaks the chain at a line ``verify`` names, and recomputing the
chain after such an edit needs the key. Removing lines from the *end* leaves a shorter chain that
is still valid; only an outside witness of a later entry (``verify(..., anchor=(seq, hash))``, a
head published with ``registry audit head``) can detect that.

Format of line ``n`` (1-based; ``seq == n``), canonical JSON (sorted keys, no spaces, ASCII only)
followed by ``\\n``::

    {"event": "...", "hash": H, "prev": P, "seq": n, "time": "2025-01-01T00:00:00.000000Z", ...}

    P = sha256(bytes of line n-1 without its newline), or 64 zeros for line 1
    H = hmac_sha256(key, canonical JSON of the entry without "hash")

Line 1 is the header, ``{"event": "log.started", "mac": "hmac-sha256", "key_id": K, ...}``: it
says how the chain is keyed and which key (``K``, the key id, never the key), so that a verifier
holding another key is told "this log is keyed with key id K, you gave J" instead of a bare
mismatch. A header may also seal the log this one replaced (``sealed_*``: ``audit_rotate``).

Logs of the release before keyed chains have no header and ``H = sha256(...)``: anyone can
recompute them, so a service refuses to append to one (``registry audit rotate`` seals it into a
new keyed log) and ``verify`` checks one only when asked to (``key=None``: ``--unkeyed``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.core.audit_key import AuditKey
from registry.core.digest import HEX64, unreadable
from registry.core.times import now_iso_utc
from registry.errors import AuditLogCorrupt

GENESIS_PREV = "0" * 64
# Upper bound of one canonical line; anything longer in the file was not written by append().
MAX_LINE_BYTES = 256 * 1024
RESERVED = frozenset({"seq", "time", "event", "prev", "hash"})
MAC_SCHEME = "hmac-sha256"
HEADER_EVENT = "log.started"
SEAL_FIELDS = ("sealed_file", "sealed_entries", "sealed_head", "sealed_sha256", "sealed_key_id")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


@dataclass(frozen=True)
class Seal:
    """The log a keyed log replaced, as its header records it: the file's name (beside it), its
    last entry (``entries``, ``head``), the SHA-256 of its bytes and its key id (None: unkeyed)."""

    file: str
    entries: int
    head: str
    sha256: str
    key_id: str | None

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> Seal | None:
        if header.get("sealed_file") is None:
            return None
        return cls(
            str(header["sealed_file"]),
            int(header["sealed_entries"]),
            str(header["sealed_head"]),
            str(header["sealed_sha256"]),
            header.get("sealed_key_id"),
        )

    def fields(self) -> dict[str, Any]:
        values = (self.file, self.entries, self.head, self.sha256, self.key_id)
        return dict(zip(SEAL_FIELDS, values, strict=True))


@dataclass(frozen=True)
class Head:
    """The last entry of a log: what to publish elsewhere (``anchor``) to detect truncation."""

    seq: int
    hash: str
    time: str | None
    key_id: str | None

    @property
    def anchor(self) -> str:
        """``SEQ:HASH``, as ``registry audit verify --anchor`` takes it."""
        return f"{self.seq}:{self.hash}"


@dataclass(frozen=True)
class ChainReport:
    """What ``verify`` found: the entries (header included), how the chain is keyed, its head,
    and the log its header seals, if any."""

    path: str
    entries: int
    key_id: str | None
    head: Head
    seal: Seal | None


def canonical_json(obj: dict[str, Any]) -> bytes:
    """The one serialisation that is hashed and written: sorted keys, no spaces, ASCII only."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry_hash(body: dict[str, Any], key: AuditKey | None) -> str:
    """``hash`` of an entry whose other fields are ``body``: keyed, or plain SHA-256 (``None``:
    the unkeyed logs of the release before keys)."""
    data = canonical_json(body)
    if key is None:
        return sha256_hex(data)
    return hmac.new(key.secret, data, hashlib.sha256).hexdigest()


def make_line(
    event: str, fields: dict[str, Any], seq: int, prev: str, key: AuditKey
) -> tuple[dict[str, Any], bytes]:
    """The entry ``seq`` chained after a line that hashes to ``prev``, and its line (with the
    newline): the one place a line is made, for the writer and for a rotated log's header."""
    entry: dict[str, Any] = {**fields, "seq": seq, "time": now_iso_utc(), "event": event}
    entry["prev"] = prev
    entry["hash"] = entry_hash(entry, key)
    line = canonical_json(entry) + b"\n"
    # Unreachable with the writer's caps (32 x 512 chars, 12 bytes per escaped char at most);
    # kept so that raising a cap can never produce a line verify() refuses.
    if len(line) > MAX_LINE_BYTES:
        raise ValueError(f"audit entry would be {len(line)} bytes, over the limit")
    return entry, line


def header_fields(key: AuditKey, seal: Seal | None = None) -> dict[str, Any]:
    """The fields of a keyed log's first line (its event is ``HEADER_EVENT``)."""
    return {"mac": MAC_SCHEME, "key_id": key.id, **(seal.fields() if seal else {})}


def header_problem(first: dict[str, Any], key: AuditKey | None) -> str | None:
    """Why the parsed first line of a log does not declare the keying ``key`` needs, or None."""
    mac = first.get("mac")
    if key is None:
        if mac is not None:
            return (
                f"this log is keyed ({mac}, key id {first.get('key_id')!r}); check it with its "
                "key, not as an unkeyed log"
            )
        return None
    if mac is None:
        return (
            'line 1 declares no key (no "mac"): this is an unkeyed log of the release before '
            "keyed chains, or one rewritten without the key. A log of that release is checked "
            "with --unkeyed against the seal in the header of the keyed log that replaced it"
        )
    if mac != MAC_SCHEME or first.get("event") != HEADER_EVENT:
        return f"line 1 declares the scheme {mac!r}, which this release does not know"
    if first.get("key_id") != key.id:
        return (
            f"this log is keyed with key id {first.get('key_id')!r}, you gave key id "
            f"{key.id!r}: check it with the key it was written with (REGISTRY_AUDIT_KEY_FILE)"
        )
    return None


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_line(raw: bytes) -> dict[str, Any]:
    """Parse one line as a flat JSON object; raise ``ValueError(problem)`` otherwise."""
    # Entries are flat. Checking that before json.loads matters: the C decoder recurses per
    # nesting level up to the recursion limit, which web3's dependencies raise to 100 000, so a
    # forged line of 200 000 '[' would overflow the C stack and kill the verifier.
    structure = _JSON_STRING.sub(b"", raw)
    if not raw.startswith(b"{") or structure.count(b"{") != 1 or b"[" in structure:
        raise ValueError(
            "not a flat JSON object (an entry holds only strings, integers, booleans and null)"
        )
    try:
        entry = json.loads(raw.decode("ascii"), object_pairs_hook=_reject_duplicate_keys)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"not a JSON line ({exc})") from None
    if not isinstance(entry, dict):
        raise ValueError(f"not a JSON object but {type(entry).__name__}")
    return entry


def check_entry(raw: bytes, lineno: int, prev_hash: str, key: AuditKey | None) -> dict[str, Any]:
    """Return the parsed entry on line ``lineno``; raise ``ValueError(problem)`` if it is bad."""
    entry = parse_line(raw)
    missing = sorted(RESERVED - entry.keys())
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    seq, claimed, prev = entry["seq"], entry["hash"], entry["prev"]
    if not isinstance(claimed, str) or HEX64.fullmatch(claimed) is None:
        raise ValueError(f"hash {claimed!r} is not 64 lowercase hex characters")
    if not isinstance(prev, str) or HEX64.fullmatch(prev) is None:
        raise ValueError(f"prev {prev!r} is not 64 lowercase hex characters")
    try:
        canonical = canonical_json(entry)
    except ValueError as exc:
        raise ValueError(f"not canonical JSON ({exc})") from None
    if raw != canonical:
        raise ValueError("line is not in canonical form (it was re-serialised or edited by hand)")
    actual = entry_hash({k: v for k, v in entry.items() if k != "hash"}, key)
    if not hmac.compare_digest(actual, claimed):
        kind = "its keyed hash (edited, or re-hashed without the key)" if key else "its hash"
        raise ValueError(
            f"content does not match {kind} (recorded {claimed[:12]}…, computed {actual[:12]}…)"
        )
    if type(seq) is not int or seq != lineno:
        raise ValueError(f"seq is {seq!r}, expected {lineno} (a line was removed, added or moved)")
    if prev != prev_hash:
        raise ValueError(
            f"prev {prev[:12]}… does not match the line before it ({prev_hash[:12]}…): "
            "a line was removed, inserted or moved here"
        )
    return entry


def verify(
    path: str | os.PathLike[str], key: AuditKey | None, *, anchor: tuple[int, str] | None = None
) -> ChainReport:
    """Check the whole chain in ``path`` with ``key`` (None: an unkeyed log of the release
    before keys); return what was found.

    ``anchor=(seq, hash)`` is an entry known from outside the file (a published head); the log
    must still contain it, which detects lines cut from the end.
    Raises ``AuditLogCorrupt(path, line, problem)`` at the first line where the chain does not hold
    (line 0: the file as a whole).
    """
    p = Path(path)
    prev_hash = GENESIS_PREV
    lineno = 0
    first: dict[str, Any] | None = None
    entry: dict[str, Any] | None = None
    try:
        f = p.open("rb")
    except FileNotFoundError:
        raise AuditLogCorrupt(str(p), 0, "the file does not exist") from None
    except OSError as exc:  # a directory, no permission
        raise unreadable(p, exc) from None
    with f:
        while True:
            try:
                raw = f.readline(MAX_LINE_BYTES + 1)
            except OSError as exc:  # EIO from a failing disk: say so, not a traceback
                raise unreadable(p, exc) from None
            if not raw:
                break
            lineno += 1
            if not raw.endswith(b"\n"):
                problem = (
                    f"line is longer than {MAX_LINE_BYTES} bytes"
                    if len(raw) > MAX_LINE_BYTES
                    else "last line is incomplete (no newline): a write was cut off or the file "
                    "was truncated"
                )
                raise AuditLogCorrupt(str(p), lineno, problem)
            line = raw[:-1]
            try:
                if first is None:
                    # The header first: a wrong key is named as such, not as a hash mismatch.
                    wrong = header_problem(parse_line(line), key)
                    if wrong is not None:
                        raise ValueError(wrong)
                entry = check_entry(line, lineno, prev_hash, key)
            except ValueError as exc:
                raise AuditLogCorrupt(str(p), lineno, str(exc)) from None
            first = first or entry
            if anchor is not None and lineno == anchor[0] and entry["hash"] != anchor[1]:
                raise AuditLogCorrupt(
                    str(p),
                    lineno,
                    f"entry {lineno} has hash {entry['hash'][:12]}…, but the anchor says "
                    f"{anchor[1][:12]}…",
                )
            prev_hash = sha256_hex(line)
    if anchor is not None and lineno < anchor[0]:
        raise AuditLogCorrupt(
            str(p),
            lineno + 1,
            f"the log ends after {lineno} entries, but entry {anchor[0]} was anchored: "
            "lines were removed from the end",
        )
    if key is not None and first is None:
        raise AuditLogCorrupt(
            str(p), 1, "the log is empty: a keyed log starts with its header line"
        )
    head = (
        Head(0, GENESIS_PREV, None, None)
        if entry is None
        else Head(lineno, str(entry["hash"]), str(entry["time"]), key.id if key else None)
    )
    seal = Seal.from_header(first) if first is not None and key is not None else None
    return ChainReport(str(p), lineno, key.id if key else None, head, seal)
