"""Strict JSON, decided once for all the JSON in a checkpoint: its header and its metadata values.

``json.loads`` accepts input that two readers of the same file can disagree on, or that costs far
more than its size suggests:

- duplicate keys (Python keeps the last, other readers the first), so a file could look like one
  network to the registry and another to a different loader;
- ``NaN`` and ``Infinity``, which are not JSON;
- deep nesting: the C decoder recurses on the C stack up to the interpreter's recursion limit,
  which web3's dependencies (py_ecc, py-evm) raise to 100 000 at import, so in such a process a
  header of 100 000 ``[`` crashes the interpreter instead of raising. The depth is therefore
  checked *before* ``json.loads`` runs, without recursion;
- long integer literals, whose conversion takes quadratic time: Python's own guard (4300 digits)
  can be switched off with ``PYTHONINTMAXSTRDIGITS=0``, so the limit is enforced here.

``loads`` refuses each of them with a ``StrictJSONError`` whose ``problem`` is a stable code and
whose message names the offending value. It is a plain ``ValueError``, not part of the product's
exception tree, because it never leaves this package: ``modelformat.header`` turns it into a
``MalformedCheckpoint``, ``modelformat.spec`` into a ``SpecError`` naming the metadata key.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

# A safetensors header nests 3 deep (header -> tensor entry -> shape), the metadata's JSON values
# 2 deep (normalization -> mean); anything deeper is not ours.
MAX_JSON_DEPTH: Final = 8
# The largest number a header may hold is an offset below 2**64 (20 digits). 100 leaves numbers
# that are merely out of range to the rule they break (a shape, an offset), and stays far below
# the length at which converting a literal to an int gets slow.
MAX_INTEGER_DIGITS: Final = 100

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_TOO_DEEP_RUN = re.compile(rb"[\[{]{%d}" % (MAX_JSON_DEPTH + 1))


class StrictJSONError(ValueError):
    """JSON this package refuses. ``problem`` is one of ``not_utf8``, ``not_json``, ``too_deep``,
    ``duplicate_key``, ``not_finite``, ``integer_too_long``; the message names the value."""

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem


def short(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: messages name a value without quoting 1 MiB."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def nesting_exceeds(text: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``text``, read as JSON, nests deeper than ``limit`` (or its brackets do not pair)."""
    return _brackets_exceed(_brackets(text), limit)


def _brackets(text: bytes) -> bytes:
    """The brackets of ``text`` outside string literals, in order."""
    return _JSON_STRING.sub(b"", text).translate(None, _NOT_BRACKETS)


def _brackets_exceed(brackets: bytes, limit: int) -> bool:
    """No recursion and only C-speed passes: peel off all innermost pairs at once, ``limit`` times
    (the NUL placeholder stops a pass from removing a pair that only forms once its inner pair is
    gone). Anything left is deeper, or unbalanced."""
    if limit == MAX_JSON_DEPTH and _TOO_DEEP_RUN.search(brackets):
        return True  # the common attack, a long run of openers, without peeling 1 MiB 8 times
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"\0").replace(b"{}", b"\0").replace(b"\0", b"")
    return bool(brackets)


def _unpaired(brackets: bytes) -> bool:
    """Brackets that cannot pair, by count alone; a run of openers past the limit is "too deep"
    even if it never closes, as no reader could get through it without recursing that far."""
    return not _TOO_DEEP_RUN.search(brackets) and (
        brackets.count(b"[") != brackets.count(b"]") or brackets.count(b"{") != brackets.count(b"}")
    )


def loads(text: str | bytes) -> Any:
    """``json.loads`` under the rules above; ``bytes`` must be UTF-8 (never guessed as UTF-16)."""
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrictJSONError(
                "not_utf8", f"is not UTF-8 (byte {exc.start}: {exc.reason})"
            ) from None
    else:
        # surrogatepass: a lone surrogate escaped in an outer JSON string is still a character.
        raw = text.encode("utf-8", "surrogatepass")
    brackets = _brackets(raw)
    if _brackets_exceed(brackets, MAX_JSON_DEPTH):
        if _unpaired(brackets):
            raise StrictJSONError("not_json", "is not JSON: its brackets do not pair")
        raise StrictJSONError("too_deep", f"is JSON nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_no_constant,
            parse_int=_bounded_int,
        )
    except StrictJSONError:
        raise
    except RecursionError:  # unreachable after the depth check; a second line of defence
        raise StrictJSONError("too_deep", "is JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and int()'s own digit limit should it be lower
        raise StrictJSONError("not_json", f"is not JSON ({exc})") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise StrictJSONError(
                "duplicate_key",
                f"has the key {short(key)} twice; readers disagree on which one counts",
            )
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise StrictJSONError("not_finite", f"contains {name}, which is not a JSON number")


def _bounded_int(literal: str) -> int:
    digits = len(literal) - literal.startswith("-")
    if digits > MAX_INTEGER_DIGITS:
        raise StrictJSONError(
            "integer_too_long",
            f"has an integer of {digits} digits ({short(literal, 40)}), over the limit of "
            f"{MAX_INTEGER_DIGITS}",
        )
    return int(literal)
