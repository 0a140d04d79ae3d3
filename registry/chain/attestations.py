"""Evaluator attestations on chain: attest, withdraw, and read them back as typed values.

The contract stores one slot per evaluator and checkpoint (time, block, accuracy, withdrawal time)
and leaves the test-set and report digests to its ``AttestationMade`` event, found through the
stored ``attestedBlock``. The gate asks only about the evaluators a clinic trusts: one
``attestations(digest, evaluators)`` call, then one exact log query per block that holds a
standing attestation's event. A record page lists every attestation ever made of a checkpoint
(all evaluators, withdrawn ones too), from the events checked against storage.

Writes go through the client's transaction machinery (``RegistryClient.transact``), so fees,
nonces, confirmations and the contract's typed errors behave as for every other write. Nothing
here is cached: an attestation is read fresh each time a verdict needs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import event_abi_to_log_topic
from eth_utils import to_checksum_address as checksum

from registry.chain.abi import address_topic, optional_digest, to_bytes, to_hex, topic_address
from registry.chain.client import RegistryClient
from registry.chain.reverts import (
    AlreadyAttested,
    MissingRole,
    RevokedModel,
    SelfAttestation,
    UnknownModel,
)
from registry.core.attestations import Attestation
from registry.core.digest import ZERO, Digest
from registry.core.records import ModelRecord, Role, check_accuracy_bps
from registry.errors import ChainError, ContractRevert, InvalidInput, WrongChain

# Stored attestations whose events lie within this many blocks of each other are read with one
# log query (a node answers a topic-filtered range of a thousand blocks about as fast as one).
EVENT_SPAN_BLOCKS = 1_000


@dataclass(frozen=True, slots=True)
class AttestationMadeEvent:
    """An ``AttestationMade`` log: the stored numbers and the digests kept only in the event."""

    digest: Digest
    evaluator: str
    accuracy_bps: int
    test_set_digest: Digest
    report_digest: Digest | None
    attested_at: int
    tx_hash: str
    block_number: int
    log_index: int

    @classmethod
    def from_log(cls, log: Mapping[str, Any]) -> AttestationMadeEvent:
        accuracy, test_set, report, attested_at = abi_decode(
            ["uint16", "bytes32", "bytes32", "uint40"], to_bytes(log["data"])
        )
        topics = log["topics"]
        return cls(
            digest=Digest.from_bytes(to_bytes(topics[1])),
            evaluator=topic_address(topics[2]),
            accuracy_bps=int(accuracy),
            test_set_digest=Digest.from_bytes(test_set),
            report_digest=optional_digest(report),
            attested_at=int(attested_at),
            tx_hash=to_hex(log["transactionHash"]),
            block_number=int(log["blockNumber"]),
            log_index=int(log["logIndex"]),
        )

    def to_attestation(self, withdrawn_at: int | None = None) -> Attestation:
        return Attestation(
            digest=self.digest,
            evaluator=self.evaluator,
            accuracy_bps=self.accuracy_bps,
            test_set_digest=self.test_set_digest,
            report_digest=self.report_digest,
            attested_at=self.attested_at,
            attested_block=self.block_number,
            withdrawn_at=withdrawn_at,
            tx_hash=self.tx_hash,
        )


@dataclass(frozen=True, slots=True)
class AttestationRevokedEvent:
    """An ``AttestationRevoked`` log: which evaluator withdrew its attestation of which digest."""

    digest: Digest
    evaluator: str
    revoked_at: int
    tx_hash: str
    block_number: int
    log_index: int

    @classmethod
    def from_log(cls, log: Mapping[str, Any]) -> AttestationRevokedEvent:
        (revoked_at,) = abi_decode(["uint40"], to_bytes(log["data"]))
        topics = log["topics"]
        return cls(
            digest=Digest.from_bytes(to_bytes(topics[1])),
            evaluator=topic_address(topics[2]),
            revoked_at=int(revoked_at),
            tx_hash=to_hex(log["transactionHash"]),
            block_number=int(log["blockNumber"]),
            log_index=int(log["logIndex"]),
        )


@dataclass(frozen=True, slots=True)
class StoredAttestation:
    """One slot of the contract's attestation storage; ``attested_at == 0`` means none."""

    evaluator: str
    attested_at: int
    attested_block: int
    accuracy_bps: int
    revoked_at: int

    @property
    def exists(self) -> bool:
        return self.attested_at != 0


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """A withdrawn attestation: what was withdrawn, and the transaction that did it."""

    attestation: Attestation
    tx_hash: str
    block_number: int


class Attestations:
    """Attest, withdraw and read the evaluator attestations of one registry contract."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        events = {e["name"]: e for e in client.artifact.abi if e["type"] == "event"}
        self.made_topic = to_hex(event_abi_to_log_topic(events["AttestationMade"]))  # type: ignore[arg-type]
        self.revoked_topic = to_hex(event_abi_to_log_topic(events["AttestationRevoked"]))  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------
    # Writes (the signing key must hold the evaluator role)
    # ------------------------------------------------------------------------------------

    def attest(
        self,
        digest: Digest,
        accuracy_bps: int,
        test_set_digest: Digest,
        report_digest: Digest | None = None,
    ) -> Attestation:
        """Anchor the signer's own measurement of ``digest``; the contract refuses an unknown,
        revoked or batched checkpoint, the registrant's own, and a second standing one."""
        check_accuracy_bps(accuracy_bps)
        if test_set_digest.is_zero:
            raise InvalidInput(
                "an attested accuracy needs the digest of the test set it was measured on; it "
                "was the zero digest",
                test_set_digest=str(test_set_digest),
            )
        receipt = self.client.transact(
            "attest", digest.raw, accuracy_bps, test_set_digest.raw, (report_digest or ZERO).raw
        )
        made = [AttestationMadeEvent.from_log(log) for log in self._logs(receipt, self.made_topic)]
        if not made:
            raise ChainError(f"the attestation of {digest.short} was mined without its event")
        return made[-1].to_attestation()

    def withdraw(self, digest: Digest) -> Withdrawal:
        """Withdraw the signer's standing attestation of ``digest`` (the contract refuses when
        there is none)."""
        receipt = self.client.transact("revokeAttestation", digest.raw)
        revoked = [
            AttestationRevokedEvent.from_log(log) for log in self._logs(receipt, self.revoked_topic)
        ]
        if not revoked:
            raise ChainError(f"the withdrawal of {digest.short} was mined without its event")
        event = revoked[-1]
        withdrawn = self.of(digest, [event.evaluator])[event.evaluator.lower()]
        if withdrawn is None:
            raise ChainError(
                f"the withdrawn attestation of {digest.short} by {event.evaluator} is not stored; "
                "the node may be reorganising, try again"
            )
        return Withdrawal(
            replace(withdrawn, withdrawn_at=event.revoked_at), event.tx_hash, event.block_number
        )

    def refusal(self, digest: Digest, record: ModelRecord | None) -> ContractRevert | None:
        """What the contract would refuse an attestation of ``digest`` (whose record was just
        read) by this client's key with, read first so that a refused attestation costs no gas
        and no measurement; None when it would be taken. The contract checks again."""
        account = self.client.account
        if account is None:
            return None  # sending will say that a key is needed
        if not self.client.has_role(Role.EVALUATOR, account.address):
            return MissingRole(account.address, int(Role.EVALUATOR))
        if record is None:
            return UnknownModel(digest.raw)
        if record.registrant == account.address:
            return SelfAttestation(digest.raw, account.address)
        if record.revocation is not None:
            return RevokedModel(digest.raw, record.revocation.revoked_at)
        (slot,), _ = self.stored(digest, [account.address])
        if slot.exists and not slot.revoked_at:
            return AlreadyAttested(digest.raw, account.address, slot.attested_at)
        return None

    def _logs(self, receipt: Mapping[str, Any], topic: str) -> list[Mapping[str, Any]]:
        return [
            log
            for log in receipt["logs"]
            if checksum(log["address"]) == self.client.address and to_hex(log["topics"][0]) == topic
        ]

    # ------------------------------------------------------------------------------------
    # Reads
    # ------------------------------------------------------------------------------------

    def stored(
        self, digest: Digest, evaluators: Sequence[str]
    ) -> tuple[list[StoredAttestation], int]:
        """The stored slots of ``evaluators`` (in order) for ``digest``, and the block whose
        state answered: one call, its chain id checked like every lookup's."""
        addresses = [checksum(e) for e in evaluators]
        found, block, chain_id = self.client.call("attestations", digest.raw, addresses)
        identity = self.client.identity.last
        expected = self.client.expected_chain_id or (identity.chain_id if identity else None)
        if expected is not None and chain_id != expected:
            self.client.identity.forget()
            raise WrongChain(expected, int(chain_id), self.client.endpoint)
        if len(found) != len(addresses):
            raise ChainError(
                f"asked for {len(addresses)} attestations of {digest.short}, the contract "
                f"answered {len(found)}; the node or contract is not the one expected"
            )
        slots = [
            StoredAttestation(address, int(at), int(at_block), int(accuracy), int(revoked))
            for address, (at, at_block, accuracy, revoked) in zip(addresses, found, strict=True)
        ]
        return slots, int(block)

    def of(self, digest: Digest, evaluators: Sequence[str]) -> dict[str, Attestation | None]:
        """Each of ``evaluators``' attestation of ``digest`` (None where it has none), keyed by
        the lowercase address: storage for the numbers, the event at ``attestedBlock`` for the
        test-set and report digests. A slot whose event the node lacks raises (fail closed)."""
        if not evaluators:
            return {}
        slots, _ = self.stored(digest, evaluators)
        answer: dict[str, Attestation | None] = {s.evaluator.lower(): None for s in slots}
        present = sorted((s for s in slots if s.exists), key=lambda s: s.attested_block)
        # Blocks close together are read with one log query: k trusted attestations made within
        # EVENT_SPAN_BLOCKS of each other cost one request, not k.
        groups: list[list[StoredAttestation]] = []
        for slot in present:
            if groups and slot.attested_block - groups[-1][0].attested_block < EVENT_SPAN_BLOCKS:
                groups[-1].append(slot)
            else:
                groups.append([slot])
        for group in groups:
            events = self._made_events(
                digest,
                {s.evaluator for s in group},
                group[0].attested_block,
                group[-1].attested_block,
            )
            for slot in group:
                event = self._matching(events, slot, digest)
                answer[slot.evaluator.lower()] = event.to_attestation(
                    withdrawn_at=slot.revoked_at or None
                )
        return answer

    def all(self, digest: Digest) -> list[Attestation]:
        """Every attestation ever made of ``digest``, by any evaluator, oldest first; each one
        an evaluator replaced after withdrawing it is marked withdrawn too."""
        logs = self.client.events.logs([[self.made_topic, self.revoked_topic], digest.raw], 0)
        made: list[AttestationMadeEvent] = []
        revoked: list[AttestationRevokedEvent] = []
        for log in sorted(logs, key=lambda lg: (int(lg["blockNumber"]), int(lg["logIndex"]))):
            if to_hex(log["topics"][0]) == self.made_topic:
                made.append(AttestationMadeEvent.from_log(log))
            else:
                revoked.append(AttestationRevokedEvent.from_log(log))
        if not made:
            return []
        evaluators = list(dict.fromkeys(e.evaluator for e in made))
        slots, _ = self.stored(digest, evaluators)
        latest = {s.evaluator: s for s in slots}
        found = []
        for event in made:
            withdrawn_at = _withdrawal_after(event, revoked)
            slot = latest[event.evaluator]
            if withdrawn_at is None and (
                slot.attested_block != event.block_number or slot.attested_at != event.attested_at
            ):
                # A standing attestation that storage does not hold: a reorg under our reads.
                raise ChainError(
                    f"the attestation of {digest.short} by {event.evaluator} in block "
                    f"{event.block_number} is not the one the contract stores; the node may be "
                    "reorganising, try again"
                )
            found.append(event.to_attestation(withdrawn_at=withdrawn_at))
        return found

    def _made_events(
        self, digest: Digest, evaluators: Iterable[str], first: int, last: int
    ) -> list[AttestationMadeEvent]:
        topics: list[str | bytes] = [address_topic(e) for e in sorted(evaluators)]
        logs = self.client.events.logs([self.made_topic, digest.raw, topics], first, last)
        return [AttestationMadeEvent.from_log(log) for log in logs]

    @staticmethod
    def _matching(
        events: Sequence[AttestationMadeEvent], slot: StoredAttestation, digest: Digest
    ) -> AttestationMadeEvent:
        mine = [
            e
            for e in events
            if e.evaluator == slot.evaluator
            and e.block_number == slot.attested_block
            and e.attested_at == slot.attested_at
            and e.accuracy_bps == slot.accuracy_bps
        ]
        if not mine:
            # Storage names a block whose event the node does not have: fail closed.
            raise ChainError(
                f"the attestation of {digest.short} by {slot.evaluator} is stored but block "
                f"{slot.attested_block} holds no AttestationMade event for it; the node may be "
                "pruned or reorganising, try again"
            )
        return mine[-1]


def _withdrawal_after(
    made: AttestationMadeEvent, revoked: Sequence[AttestationRevokedEvent]
) -> int | None:
    """When the evaluator withdrew this attestation: its first withdrawal after it, if any."""
    for event in revoked:
        if event.evaluator == made.evaluator and (event.block_number, event.log_index) > (
            made.block_number,
            made.log_index,
        ):
            return event.revoked_at
    return None
