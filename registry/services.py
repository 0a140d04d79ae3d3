"""The one path the CLI and the HTTP API share to register, revoke and import a checkpoint.

``registry register``, ``registry train --register`` and ``POST /models`` all go through
``register_with_card``, so what one front end refuses the other refuses too, and nothing is
anchored that a gate would refuse or that the checkpoint's own card contradicts:

* the bytes pass the gate's own format check (``modelformat.header.inspect_checkpoint``): a
  checkpoint the gate would refuse is never anchored;
* with a model card, the accuracy and the test-set digest are the card's, the card must name this
  checkpoint, and a value given beside it must agree with it: the card is anchored too, so a
  record that contradicted its own card would be evidence against itself;
* with only a card's digest (a card kept elsewhere) nothing can be read from the card, so the
  accuracy and the test-set digest must be given explicitly.

``import_checkpoint`` is the other way in, for a checkpoint registered elsewhere: it needs no
registrar key, because it anchors nothing. It keeps bytes only when their digest is registered,
valid under the clinic's policy, and they pass the same format check, so what a service stores is
bounded by what is anchored on chain (``registry pull``, ``POST /models/{digest}/import``,
``POST /verify?store=true`` and the pull-through of ``registry.pull`` all use it).

Every check runs before the chain is reached (``connect`` is called last), so refused input needs
no node and costs no gas. Messages name the CLI's flags where only the CLI can give the value
(the API takes a checkpoint, a card and a parent, nothing else).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from modelformat.header import inspect_checkpoint
from registry.cards import CardFacts, card_facts, parse_card
from registry.core.batches import BatchRecord, build_tree, manifest_bytes
from registry.core.digest import Digest, digest_bytes, parse_optional
from registry.core.merkle_batch import StandardMerkleTree
from registry.core.records import (
    ModelRecord,
    RegisterRequest,
    RegistrationResult,
    RevocationReason,
    Verdict,
    check_accuracy_bps,
)
from registry.errors import InvalidInput, InvalidModelCard, NotFound, NotVerified

if TYPE_CHECKING:
    from registry.chain.client import RegistryClient
    from registry.core.store import CheckpointStore

Connect = Callable[[], "RegistryClient"]
# A digest's verdict under the clinic's policy: the gate's (``Gate.verdict``) or a fresh one.
VerdictOf = Callable[[Digest], Verdict]


def check_registration(
    data: bytes,
    *,
    card: bytes | None = None,
    card_digest: object = None,
    accuracy_bps: int | None = None,
    test_set_digest: object = None,
    parent: object = None,
) -> RegisterRequest:
    """What registering ``data`` would anchor, once every check has passed (rules: module doc).

    ``card`` is the model card's bytes, in canonical form; ``card_digest`` the digest of a card
    kept elsewhere (with ``card`` too, it must be that card's). Digests are text or ``Digest``.
    Raises ``InvalidCheckpoint`` for a file the gate would refuse, ``InvalidModelCard`` for a card
    that is unusable or written for another checkpoint, ``InvalidInput`` for a missing value or
    one that contradicts the card.
    """
    # What was typed is checked before the file is read: a typo is reported as itself.
    if accuracy_bps is not None:
        check_accuracy_bps(accuracy_bps)
    given = _Given(
        accuracy_bps=accuracy_bps,
        test_set_digest=None if test_set_digest is None else Digest.parse(test_set_digest),
        card_digest=None if card_digest is None else Digest.parse(card_digest),
        parent=parse_optional(parent),
    )
    inspect_checkpoint(data)
    digest = digest_bytes(data)
    if card is None:
        return _without_card(digest, given)
    return _with_card(digest, card, given)


def register_with_card(
    connect: Connect,
    data: bytes,
    *,
    card: bytes | None = None,
    card_digest: object = None,
    accuracy_bps: int | None = None,
    test_set_digest: object = None,
    parent: object = None,
    store: CheckpointStore | None = None,
) -> RegistrationResult:
    """Check (``check_registration``), keep the files in ``store`` if given, then anchor.

    ``connect`` returns the chain client; it is called only once the files have passed every
    check. A checkpoint registered again with identical fields by the same key comes back with
    ``already_registered``; any other clash raises the contract's error.
    """
    request = check_registration(
        data,
        card=card,
        card_digest=card_digest,
        accuracy_bps=accuracy_bps,
        test_set_digest=test_set_digest,
        parent=parent,
    )
    if store is not None:
        # Stored before the transaction: once a record exists its bytes must be here. Bytes
        # that never get registered are harmless: nothing unverified is ever served.
        store.put(data, "checkpoint")
        if card is not None:
            store.put(card, "card")
    return connect().register(request)


def check_batch(items: Sequence[tuple[bytes, bytes]]) -> tuple[StandardMerkleTree, bytes]:
    """The tree and manifest bytes of a batch of (checkpoint bytes, model card bytes), each pair
    checked as ``check_registration`` checks one; an empty batch or a checkpoint given twice is
    refused. Nothing touches the chain."""
    requests = [check_registration(data, card=card) for data, card in items]
    tree = build_tree(requests)
    return tree, manifest_bytes(tree)


def refuse_anchored(client: RegistryClient, tree: StandardMerkleTree) -> None:
    """Refuse a batch holding a checkpoint that already has a record on chain, registered on
    its own or withdrawn as a leaf: a digest has one record however it was anchored, so such a
    leaf could never be valid through the batch. Asked before anything is written or sent."""
    # A model leaf's first value is its digest (MODEL_LEAF_ENCODING: bytes32).
    taken = client.anchored_among([Digest.from_bytes(cast(bytes, v[0])) for v in tree.values])
    if taken:
        named = ", ".join(f"{digest.short} ({how})" for digest, how in taken[:5])
        more = f" and {len(taken) - 5} more" if len(taken) > 5 else ""
        raise InvalidInput(
            f"{len(taken)} checkpoint(s) of the batch already have a record on this chain: "
            f"{named}{more}; a checkpoint has one record however it was anchored, so leave "
            "them out of the batch (`registry show DIGEST` says what the chain holds)",
            anchored=[{"digest": str(digest), "state": how} for digest, how in taken],
        )


def register_batch(connect: Connect, tree: StandardMerkleTree, manifest: bytes) -> BatchRecord:
    """Anchor the root of ``tree`` with the SHA-256 of its manifest (write the manifest first:
    without it no leaf of the batch can be shown to be in it)."""
    return connect().register_batch(tree.root, len(tree), digest_bytes(manifest))


def revoke(
    connect: Connect, digest: object, reason: object, replacement: object = None
) -> ModelRecord:
    """Revoke ``digest`` for good. ``reason`` is a code or a name (``safety-issue``);
    ``replacement`` the digest of a registered, valid checkpoint to use instead, or None.
    Both are parsed before ``connect`` is called."""
    wanted = Digest.parse(digest)
    why = RevocationReason.parse(reason)
    instead = parse_optional(replacement)
    return connect().revoke(wanted, why, instead)


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did: ``imported`` is False when the checkpoint was already stored (then
    nothing changed); ``card_stored`` whether the service now holds the model card too."""

    verdict: Verdict
    imported: bool
    card_stored: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "digest": str(self.verdict.digest),
            "imported": self.imported,
            "stored": True,
            "card_stored": self.card_stored,
            "verdict": self.verdict.to_dict(),
        }


def importable(digest: Digest, verdict_of: VerdictOf) -> Verdict:
    """The verdict of ``digest`` if a service may keep its bytes; ``NotFound`` when it is not
    registered, ``NotVerified`` (revoked, policy, unconfirmed) otherwise."""
    verdict = verdict_of(digest)
    if verdict.reason == "unknown":
        raise NotFound(
            f"no checkpoint {digest} is registered on this chain, so it cannot be imported: only "
            "bytes whose digest is anchored are kept; check the file (`registry hash FILE`)",
            digest=str(digest),
        )
    if not verdict.verified:
        raise NotVerified(
            f"checkpoint {digest.short} may not be imported: {verdict.reason}: {verdict.detail}",
            verdict,
        )
    return verdict


def import_checkpoint(
    data: bytes,
    verdict_of: VerdictOf,
    store: CheckpointStore,
    *,
    card: bytes | None = None,
    expected: object = None,
) -> ImportResult:
    """Keep ``data`` (and ``card``) in ``store`` if the checkpoint may be used here.

    In order, nothing stored on any refusal: ``expected`` (a digest, when the caller named one)
    must be the bytes' own (``InvalidInput``); the bytes pass the format check
    (``InvalidCheckpoint``); the digest is registered and valid under the policy (``importable``);
    the card, if given, is the anchored one in canonical form and names this checkpoint
    (``InvalidModelCard``). Importing a stored checkpoint again changes nothing.
    """
    wanted = None if expected is None else Digest.parse(expected)
    digest = digest_bytes(data)
    if wanted is not None and wanted != digest:
        raise InvalidInput(
            f"the bytes sent hash to {digest}, not to {wanted}, the checkpoint named; send the "
            "file of that checkpoint, or name the digest of this one",
            expected=str(wanted),
            actual=str(digest),
        )
    inspect_checkpoint(data)
    verdict = importable(digest, verdict_of)
    record = verdict.record
    assert record is not None  # a verified verdict carries its record
    if card is not None:
        _check_imported_card(card, digest, record.card_digest)
    imported = not store.has(digest.hex, "checkpoint")
    if imported:
        store.put(data, "checkpoint")
    if card is not None:
        store.put(card, "card")  # the same bytes twice: a no-op
    return ImportResult(verdict, imported, store.has(record.card_digest.hex, "card"))


def _check_imported_card(card: bytes, digest: Digest, anchored: Digest) -> None:
    actual = digest_bytes(card)
    if actual != anchored:
        raise InvalidModelCard(
            f"the model card sent hashes to {actual}, but the card anchored with {digest.short} "
            f"is {anchored}; send that card, or import the checkpoint without one",
            card_digest=str(actual),
            anchored_card_digest=str(anchored),
        )
    facts = card_facts(parse_card(card))  # canonical form, size, schema
    if facts.checkpoint != digest:
        raise InvalidModelCard(
            f"the model card describes the checkpoint {facts.checkpoint}, not {digest}",
            card_checkpoint=str(facts.checkpoint),
            checkpoint=str(digest),
        )


# --- the two ways to name the evidence ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Given:
    """The values given beside the checkpoint, parsed; None where not given."""

    accuracy_bps: int | None
    test_set_digest: Digest | None
    card_digest: Digest | None
    parent: Digest | None


def _without_card(digest: Digest, given: _Given) -> RegisterRequest:
    if given.card_digest is None:
        raise InvalidInput(
            "no model card given: pass the card (--card FILE, the model_card.json written by "
            "`registry train`), or the digest of a card kept elsewhere (--card-digest D) with "
            "--accuracy-bps and --test-set-digest",
            missing=["card"],
        )
    missing = {
        "accuracy_bps": "--accuracy-bps N (test accuracy in basis points, 9731 = 97.31 %)",
        "test_set_digest": "--test-set-digest D (digest of the test split it was measured on)",
    }
    absent = [name for name in missing if getattr(given, name) is None]
    if absent:
        raise InvalidInput(
            f"with only the card's digest (--card-digest {given.card_digest}) nothing can be "
            f"read from the card, so give {' and '.join(missing[name] for name in absent)}; "
            "or pass the card itself with --card FILE",
            missing=absent,
        )
    assert given.accuracy_bps is not None and given.test_set_digest is not None  # checked above
    return RegisterRequest(
        digest=digest,
        accuracy_bps=given.accuracy_bps,
        test_set_digest=given.test_set_digest,
        card_digest=given.card_digest,
        parent=given.parent,
    )


def _with_card(digest: Digest, card: bytes, given: _Given) -> RegisterRequest:
    facts = card_facts(parse_card(card))
    if facts.checkpoint != digest:
        raise InvalidModelCard(
            f"the model card describes the checkpoint {facts.checkpoint}, but the checkpoint "
            f"being registered is {digest}; use the card written for this file",
            card_checkpoint=str(facts.checkpoint),
            checkpoint=str(digest),
        )
    # A canonical card's file digest is its anchored digest (parse_card refused anything else).
    card_digest = digest_bytes(card)
    _agree("card_digest", "--card-digest", given.card_digest, "file digest", card_digest)
    _agree(
        "accuracy_bps",
        "--accuracy-bps",
        given.accuracy_bps,
        "evaluation.accuracy_bps",
        facts.accuracy_bps,
    )
    _agree(
        "test_set_digest",
        "--test-set-digest",
        given.test_set_digest,
        "evaluation.test_set_sha256",
        facts.test_set_digest,
    )
    return RegisterRequest(
        digest=digest,
        accuracy_bps=facts.accuracy_bps,
        test_set_digest=facts.test_set_digest,
        card_digest=card_digest,
        parent=_parent(given.parent, facts),
    )


def _agree(name: str, flag: str, given: object, where: str, from_card: object) -> None:
    """Refuse a value given beside the card that says something else than the card."""
    if given is None or given == from_card:
        return
    raise InvalidInput(
        f"{flag} {given} contradicts the model card, whose {where} is {from_card}; the card is "
        f"anchored with the record, so they must agree: leave {flag} out to use the card's "
        "value, or register with the card written for that value",
        **{name: _plain(given), f"card_{name}": _plain(from_card)},
    )


def _plain(value: object) -> object:
    return str(value) if isinstance(value, Digest) else value


def _parent(given: Digest | None, facts: CardFacts) -> Digest | None:
    # A card that names no parent accepts one given beside it (a card written before the
    # parent was known); one that names a parent must be followed.
    if given and facts.parent and given != facts.parent:
        raise InvalidInput(
            f"the parent given ({given}) and the model card's parent ({facts.parent}) differ; "
            "the card is anchored, so it must say the same",
            parent=str(given),
            card_parent=str(facts.parent),
        )
    return given or facts.parent
