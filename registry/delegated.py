"""Delegated registration: the one path ``registry sign-registration``, ``registry submit`` and
``POST /models/relay`` share.

Signing runs the checks a registration runs (``services.check_registration``: the one format
check, the model card naming this checkpoint, accuracy and test set read from the card), so an
offline key never signs what ``registry register`` would refuse, and it needs no chain: the
domain and nonce come from the caller. Submitting checks what the file carries that no signature
covers (the model card, which must be the one whose digest is signed, in canonical form, naming
the signed checkpoint, accuracy and test set) before the chain is asked anything; then
``registry.chain.delegation.submit`` checks, simulates and sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from registry.cards import card_facts, parse_card
from registry.chain.delegation import Submitted, sign, submit
from registry.core.digest import digest_bytes
from registry.core.signed_request import Registration, SignedRegistration, SigningDomain
from registry.errors import InvalidModelCard
from registry.services import check_registration

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from registry.chain.client import RegistryClient
    from registry.core.store import CheckpointStore


def sign_registration(
    account: LocalAccount,
    data: bytes,
    *,
    domain: SigningDomain,
    nonce: int,
    deadline: int,
    registrar: str | None = None,
    card: bytes | None = None,
    card_digest: object = None,
    accuracy_bps: int | None = None,
    test_set_digest: object = None,
    parent: object = None,
    checkpoint_file: str | None = None,
) -> SignedRegistration:
    """The signed request for registering ``data`` (checked as ``register`` checks it) on behalf
    of ``registrar`` (default: ``account`` itself; else a contract wallet that ``account``'s key
    signs for), valid on ``domain`` until ``deadline`` with ``nonce``. No chain is asked."""
    request = check_registration(
        data,
        card=card,
        card_digest=card_digest,
        accuracy_bps=accuracy_bps,
        test_set_digest=test_set_digest,
        parent=parent,
    )
    registration = Registration.of(request, registrar or account.address, nonce, deadline)
    return SignedRegistration(
        domain=domain,
        registration=registration,
        signature=sign(account, domain, registration),
        checkpoint_file=checkpoint_file,
        card=parse_card(card) if card is not None else None,
    )


def unsigned_card(request: SignedRegistration) -> bytes | None:
    """The canonical bytes of the card the request carries (None if none), once it is shown to
    be the signed one: its digest is the signed card digest, and it names the signed checkpoint,
    accuracy and test set (and parent, if it names one). ``InvalidModelCard`` otherwise."""
    if request.card is None:
        return None
    from training.card import canonical_json

    reg = request.registration
    card = canonical_json(request.card)
    facts = card_facts(parse_card(card))
    actual = digest_bytes(card)
    problems = [
        (what, str(found), str(signed))
        for what, found, signed in (
            ("digest", actual, reg.card_digest),
            ("checkpoint", facts.checkpoint, reg.digest),
            ("accuracy_bps", facts.accuracy_bps, reg.accuracy_bps),
            ("test_set_digest", facts.test_set_digest, reg.test_set_digest),
            ("parent", facts.parent or reg.parent, reg.parent),
        )
        if found != signed
    ]
    if problems:
        what, found, signed = problems[0]
        raise InvalidModelCard(
            f"the model card in the request does not go with the signed registration: its "
            f"{what} is {found}, the signed one {signed}; send the request as "
            "`registry sign-registration` wrote it",
            field=f"unsigned.card ({what})",
            card_value=found,
            signed_value=signed,
        )
    return card


def submit_signed(
    connect: Callable[[], RegistryClient],
    request: SignedRegistration,
    *,
    store: CheckpointStore | None = None,
) -> Submitted:
    """Check the request's card, keep it in ``store`` if given (before the transaction, as a
    registration keeps its files), then check, simulate and send the request."""
    card = unsigned_card(request)
    client = connect()
    if store is not None and card is not None:
        store.put(card, "card")
    return submit(client, request)
