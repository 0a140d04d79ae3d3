"""What a registration reads from a model card, and the checks that tie it to the checkpoint.

The accuracy and the digest of the test set it was measured on are anchored on chain, next to the
card's own digest; so they are taken *from* the card (``training.card`` writes them) rather than
typed in separately, which keeps the three from disagreeing. The card must also name the
checkpoint it describes, and that must be the file being registered: a card cannot be attached to
another checkpoint than the one it was written for.

The card must arrive in its canonical form (``training.card.canonical_json``), the bytes
``registry train`` writes: then the SHA-256 of the stored file *is* the anchored card digest, and
anyone holding the file can check it without knowing the canonicalisation rules.

Both ``registry register`` and ``POST /models`` read cards through here (via ``registry.services``).
It lives outside ``registry.core`` because it needs ``training.card``'s canonical form, which
imports numpy (not torch); core stays free of the training package.

Fields read (``training.card.build_card``)::

    schema, schema_version          "medical-model-registry/model-card", 1
    checkpoint.sha256               the checkpoint's digest (64 hex)
    evaluation.accuracy_bps         test accuracy, basis points
    evaluation.test_set_sha256      digest of the test split it was measured on
    parent_digest                   the version this one derives from, or null
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic_core import from_json

from registry.core.digest import Digest, parse_optional
from registry.core.records import check_accuracy_bps
from registry.errors import InvalidDigest, InvalidInput, InvalidModelCard
from training.card import CARD_SCHEMA, CARD_SCHEMA_VERSION, canonical_json

MAX_CARD_BYTES = 1 << 20
_MISSING = object()


@dataclass(frozen=True)
class CardFacts:
    """What a card states that the chain anchors (``parent`` is None for a first version)."""

    checkpoint: Digest
    accuracy_bps: int
    test_set_digest: Digest
    parent: Digest | None


def parse_card(data: bytes) -> dict[str, Any]:
    """The card as a JSON object in canonical form; anything else is an ``InvalidModelCard``."""
    if len(data) > MAX_CARD_BYTES:
        raise InvalidModelCard(
            f"the model card is {len(data)} bytes, over the limit of {MAX_CARD_BYTES}; a card "
            "holds digests and metrics, not data",
            size=len(data),
            limit=MAX_CARD_BYTES,
        )
    try:
        # pydantic-core's depth-bounded parser, not json.loads: web3's dependencies raise the
        # recursion limit so far that the C decoder can overflow the stack on deep nesting.
        card = from_json(data, allow_inf_nan=False)
    except ValueError as exc:
        raise InvalidModelCard(f"the model card is not JSON ({exc})") from None
    if not isinstance(card, dict):
        raise InvalidModelCard(f"the model card must be a JSON object, not {type(card).__name__}")
    canonical = canonical_json(card)  # a CardError is an InvalidModelCard naming its field
    if canonical != data:
        raise InvalidModelCard(
            "the model card is not in canonical form (sorted keys, no spaces, UTF-8), so its "
            "file digest would differ from its anchored digest; use the model_card.json "
            "exactly as `registry train` wrote it",
            field="<file>",
        )
    return card


def _at(card: dict[str, Any], path: str) -> Any:
    value: Any = card
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _required(card: dict[str, Any], path: str, what: str) -> Any:
    value = _at(card, path)
    if value is _MISSING or value is None:
        raise InvalidModelCard(f"the model card has no {what} ({path})", field=path)
    return value


def _digest(value: Any, path: str) -> Digest:
    try:
        return Digest.parse(value)
    except InvalidDigest as exc:
        raise InvalidModelCard(
            f"the model card's {path} is not a SHA-256 digest ({exc.problem})", field=path
        ) from None


def card_facts(card: dict[str, Any]) -> CardFacts:
    """The anchored facts a card states; each missing or malformed one is named."""
    schema, version = card.get("schema"), card.get("schema_version")
    if schema != CARD_SCHEMA or version != CARD_SCHEMA_VERSION:
        raise InvalidModelCard(
            f"the model card's schema is {schema!r} version {version!r}; this registry reads "
            f"{CARD_SCHEMA!r} version {CARD_SCHEMA_VERSION} (as `registry train` writes it)",
            field="schema",
        )
    checkpoint = _required(card, "checkpoint.sha256", "checkpoint digest")
    accuracy = _required(card, "evaluation.accuracy_bps", "test accuracy in basis points")
    try:
        accuracy_bps = check_accuracy_bps(accuracy)
    except InvalidInput as exc:
        raise InvalidModelCard(
            f"the model card's accuracy is unusable: {exc.message}",
            field="evaluation.accuracy_bps",
        ) from None
    test_set = _required(
        card, "evaluation.test_set_sha256", "digest of the test set the accuracy was measured on"
    )
    parent = _at(card, "parent_digest")
    try:
        parent_digest = None if parent is _MISSING else parse_optional(parent)
    except InvalidDigest as exc:
        raise InvalidModelCard(
            f"the model card's parent_digest is not a SHA-256 digest ({exc.problem})",
            field="parent_digest",
        ) from None
    return CardFacts(
        checkpoint=_digest(checkpoint, "checkpoint.sha256"),
        accuracy_bps=accuracy_bps,
        test_set_digest=_digest(test_set, "evaluation.test_set_sha256"),
        parent=parent_digest,
    )
