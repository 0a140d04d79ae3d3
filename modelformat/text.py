"""The rules for text a clinician reads: class names, dataset and model names, a card's prose.

A class name is what a clinician acts on, so it must read as what it is. Unicode lets text lie:

- a right-to-left override (U+202E) shows the characters after it reversed, so a label can read
  as another class's name; zero-width joiners, soft hyphens and tag characters are invisible;
- control characters move a terminal's cursor or clear its screen (``ESC [2J``);
- private-use, surrogate and unassigned code points render as whatever a font decides;
- a line or paragraph separator breaks one label into two lines;
- leading or trailing whitespace is invisible in a list (``"Normal "`` next to ``"Normal"``);
- the same letters have several encodings: ``"é"`` precomposed (NFC) or as ``e`` plus a combining
  accent look identical but are different strings, and compatibility forms (the ``ﬁ`` ligature,
  full-width digits) look like their plain letters. Text must be in NFC, and two names of one
  list that are equal after NFKC are ambiguous.

So text is refused for any character of the general categories Cc, Cf, Zl, Zp, Co, Cs and Cn
(unassigned in the Unicode version Python ships, ``unicodedata.unidata_version``), for
surrounding whitespace, and for not being NFC; ``ambiguous_pair`` finds NFKC look-alikes.

Standard library only: the checkpoint format (``modelformat.spec``) and the model card
(``training.card``) both apply these rules, so the trainer never writes text the registry refuses.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

# General category -> what it is, for the message.
REFUSED_CATEGORIES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Cc": "a control character",
        "Cf": "an invisible format character (bidirectional overrides, zero-width characters)",
        "Zl": "a line separator",
        "Zp": "a paragraph separator",
        "Co": "a private-use character",
        "Cs": "a lone surrogate",
        "Cn": "an unassigned code point",
    }
)


def describe_character(char: str) -> str:
    """``U+202E RIGHT-TO-LEFT OVERRIDE``; control characters have no name: ``U+001B``."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" {name}" if name else "")


def text_problem(text: str) -> str | None:
    """Why ``text`` may not be shown to a clinician as it is, or None if it may.

    The answer completes a sentence about the text ("class name 1 ..."): it names the first
    offending code point and its position (0-based), e.g. "holds U+202E RIGHT-TO-LEFT OVERRIDE
    at position 3, an invisible format character (...)".
    """
    for position, char in enumerate(text):
        category = unicodedata.category(char)
        what = REFUSED_CATEGORIES.get(category)
        if what is not None:
            return f"holds {describe_character(char)} at position {position}, {what}"
    if text != text.strip():
        return "starts or ends with whitespace, which no reader sees"
    if not unicodedata.is_normalized("NFC", text):
        return (
            "is not in Unicode NFC form (a letter is written as a base letter plus combining "
            "marks): write it precomposed, e.g. with unicodedata.normalize('NFC', text)"
        )
    return None


def ambiguous_pair(names: Sequence[str]) -> tuple[int, int] | None:
    """The indexes ``(i, j)``, ``i < j``, of the first two ``names`` that are equal after NFKC."""
    seen: dict[str, int] = {}
    for j, name in enumerate(names):
        folded = unicodedata.normalize("NFKC", name)
        if folded in seen:
            return seen[folded], j
        seen[folded] = j
    return None
