"""RegistryClient: typed reads and writes of one deployed ModelRegistry contract.

Two kinds of chain sit behind the same client: ``memory`` (eth-tester in-process; state dies with
the process) and any JSON-RPC URL, where transactions are signed with a locally held key. The
client composes the jobs that each live in a module of their own: ``rpc`` (the one place web3
errors are translated), ``identity`` (the right chain and our contract's code, or nothing is
answered), ``abi`` (calldata, results and typed events), ``events`` (log queries and the
registration-event cache) and ``transactions`` (fees, nonces, signing, receipts). What is left here
is what the registry means: records rebuilt from storage and events, and the contract's writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address as checksum
from web3 import Web3

from registry.chain.abi import (
    BatchRegisteredEvent,
    ContractAbi,
    to_bytes,
    to_hex,
)
from registry.chain.artifacts import ContractArtifact, load_artifact
from registry.chain.events import ContractEvents
from registry.chain.identity import ChainIdentity, IdentityCheck
from registry.chain.reverts import AlreadyRegistered, RevertDecoder, UnknownModel
from registry.chain.rpc import Rpc
from registry.chain.transactions import GAS_LIMITS, NonceCounter, Transactions
from registry.core.batches import BatchRecord, ModelLeaf
from registry.core.digest import ZERO, Digest
from registry.core.endpoint import MEMORY
from registry.core.records import (
    HistoryEvent,
    ModelRecord,
    RegisterRequest,
    RegistrationResult,
    Revocation,
    RevocationReason,
    Role,
)
from registry.errors import ChainError, ContractMismatch, WrongChain

# Lookups sent in one JSON-RPC batch when checking many digests at once.
ANCHORED_CHUNK = 256

# BatchRegistered events kept per client (a few hundred bytes each), forgotten all at once.
MAX_CACHED_BATCH_EVENTS = 4096


class RegistryClient:
    """Typed operations on one deployed ModelRegistry contract."""

    # The in-process eth-tester behind a ``memory`` client (to mine blocks or take snapshots);
    # None for a node.
    eth_tester: Any = None

    def __init__(
        self,
        w3: Web3,
        *,
        address: str,
        deployment_block: int = 0,
        expected_chain_id: int | None = None,
        account: LocalAccount | None = None,
        confirmations: int = 1,
        tx_timeout_s: float = 120.0,
        identity_ttl_s: float = 10.0,
        endpoint: str = MEMORY,
        artifact: ContractArtifact | None = None,
        nonces: NonceCounter | None = None,
    ) -> None:
        """``nonces``: the key's counter shared with another client of the same key (the
        deployment's, say); by default this client counts on its own."""
        self.address = checksum(address)
        self.deployment_block = deployment_block
        self.artifact = artifact or load_artifact()
        self.abi = ContractAbi(self.artifact.abi)
        self.rpc = Rpc(w3, endpoint=endpoint, decoder=RevertDecoder(self.artifact.abi))
        self.identity = IdentityCheck(
            self.rpc,
            address=self.address,
            runtime_code=self.artifact.deployed_bytecode,
            expected_chain_id=expected_chain_id,
            ttl_s=identity_ttl_s,
        )
        self._batch_events: dict[tuple[bytes, str, int, int], BatchRegisteredEvent] = {}
        self.events = ContractEvents(
            self.rpc,
            self.abi,
            address=self.address,
            deployment_block=deployment_block,
            identity=self.identity,
        )
        self.transactions = Transactions(
            self.rpc,
            account,
            chain_id=lambda: self.check_identity().chain_id,
            confirmations=confirmations,
            tx_timeout_s=tx_timeout_s,
            nonces=nonces,
        )

    @property
    def w3(self) -> Web3:
        return self.rpc.w3

    @property
    def endpoint(self) -> str:
        """The node as messages name it: ``scheme://host[:port]``, never its credentials."""
        return self.rpc.endpoint

    @property
    def account(self) -> LocalAccount | None:
        return self.transactions.account

    @property
    def confirmations(self) -> int:
        return self.transactions.confirmations

    @property
    def tx_timeout_s(self) -> float:
        return self.transactions.tx_timeout_s

    @property
    def expected_chain_id(self) -> int | None:
        return self.identity.expected_chain_id

    # ------------------------------------------------------------------------------------
    # The session with the node
    # ------------------------------------------------------------------------------------

    def check_identity(self, *, force: bool = False) -> ChainIdentity:
        """Chain id and runtime code as expected, re-checked at most every ``identity_ttl_s``."""
        return self.identity.check(force=force)

    @property
    def chain_id(self) -> int:
        return self.check_identity().chain_id

    def head(self) -> int:
        return self.rpc.block_number()

    def serialised(self) -> contextlib.AbstractContextManager[Any]:
        """Hold off every client of this chain while touching it directly: eth-tester takes one
        thread at a time (a test mining blocks, say); a no-op on a node."""
        return self.rpc.serialised()

    def reconnect(self, w3: Web3, endpoint: str) -> None:
        """Talk to another node from now on (the same contract expected there): its identity is
        checked again and the key's nonce asked for again."""
        self.rpc.retarget(w3, endpoint)
        self.identity.forget()
        self.transactions.resync_nonce()

    def forget_chain_state(self) -> None:
        """Forget all this client remembers of the chain (identity, nonce, fees, events): after
        the chain was reverted to a snapshot or reset under it."""
        self.identity.forget()
        self.transactions.resync_nonce()
        self.transactions.expire_fees()
        self.events.forget()
        self._batch_events.clear()

    # ------------------------------------------------------------------------------------
    # Reads
    # ------------------------------------------------------------------------------------

    def call(self, name: str, *args: Any, block: int | str = "latest") -> tuple[Any, ...]:
        """Call contract function ``name`` (any, view or not) and return its decoded values; a
        revert raises the contract's typed error. The identity check comes first."""
        self.check_identity()
        fn = self.abi.function(name)
        raw = self.rpc.eth_call({"to": self.address, "data": to_hex(fn.encode(*args))}, block)
        if not raw and fn.outputs:
            # Code vanished between checks (node swapped or reset): fail closed.
            self.identity.forget()
            raise ContractMismatch(self.address, "returned nothing; it may hold no contract now")
        return fn.decode(raw)

    def lookup(self, digest: Digest) -> tuple[ModelRecord | None, int]:
        """The current record (None if unknown) and the block whose state answered: one call."""
        stored, block, chain_id, block_hash = self.call("lookup", digest.raw)
        # The chain id comes with every answer, so a node swapped for another chain between two
        # identity checks is caught on its first answer, not after the identity TTL.
        identity = self.identity.last
        expected = self.expected_chain_id or (identity.chain_id if identity else None)
        if expected is not None and chain_id != expected:
            self.identity.forget()
            raise WrongChain(expected, int(chain_id), self.endpoint)
        exists = int(stored[0], 16) != 0  # registrant; a timestamp is never the sentinel
        if not exists:
            return None, int(block)
        return self._record_from_storage(digest, stored, int(block), bytes(block_hash)), int(block)

    def get(self, digest: Digest) -> ModelRecord | None:
        return self.lookup(digest)[0]

    def is_valid(self, digest: Digest) -> bool:
        return bool(self.call("isValid", digest.raw)[0])

    def has_role(self, role: Role, account: str) -> bool:
        return bool(self.call("hasRole", int(role), checksum(account))[0])

    def admin(self) -> tuple[str, str | None]:
        pending = self.call("pendingAdmin")[0]
        admin = checksum(self.call("admin")[0])
        return admin, (None if int(pending, 16) == 0 else checksum(pending))

    def _record_from_storage(
        self, digest: Digest, stored: Sequence[Any], head: int, block_hash: bytes
    ) -> ModelRecord:
        registrant, registered_at, registered_block, accuracy, revoked_at, revoked_block = stored[
            :6
        ]
        reason, replacement = stored[6], stored[7]
        event = self.events.registration(
            digest,
            int(registered_block),
            (checksum(registrant), int(registered_at), int(accuracy)),
            head=head,
            block_hash=block_hash,
        )
        revocation = None
        if reason:  # the reason code, never the time, says whether it is revoked
            revoked = self.events.revocation(digest, int(revoked_block))
            revocation = Revocation(
                revoked_at=int(revoked_at),
                block_number=int(revoked_block),
                reason=RevocationReason(int(reason)),
                replacement=None if replacement == bytes(32) else Digest.from_bytes(replacement),
                revoker=revoked.revoker if revoked else None,
                tx_hash=revoked.tx_hash if revoked else None,
            )
        return ModelRecord(
            digest=digest,
            registrant=checksum(registrant),
            registered_at=int(registered_at),
            registered_block=int(registered_block),
            accuracy_bps=int(accuracy),
            test_set_digest=event.test_set_digest,
            card_digest=event.card_digest,
            parent=event.parent,
            registration_tx=event.tx_hash,
            revocation=revocation,
        )

    def history(self, digest: Digest | None = None) -> list[HistoryEvent]:
        """Every registration and revocation (of one checkpoint, or all), in chain order."""
        return self.events.history(digest)

    def list_models(
        self, *, registrant: str | None = None, valid: bool | None = None
    ) -> list[ModelRecord]:
        """Records of every registered checkpoint, optionally filtered, oldest first."""
        records = []
        for digest in self.events.registered(registrant=registrant):
            record = self.get(digest)
            if record is not None and (valid is None or record.valid == valid):
                records.append(record)
        return records

    def children(self, digest: Digest) -> list[Digest]:
        """Checkpoints registered with ``digest`` as their parent (indexed event topic)."""
        return self.events.children(digest)

    def lineage(self, digest: Digest) -> list[ModelRecord]:
        """The chain of ancestors, the checkpoint itself first, the first version last."""
        chain: list[ModelRecord] = []
        seen: set[Digest] = set()
        current: Digest | None = digest
        while current is not None and current not in seen:
            seen.add(current)
            record = self.get(current)
            if record is None:
                break
            chain.append(record)
            current = record.parent
        return chain

    # ------------------------------------------------------------------------------------
    # Writes
    # ------------------------------------------------------------------------------------

    def transact(self, name: str, *args: Any) -> dict[str, Any]:
        """Send contract function ``name(*args)`` as is, without the checks of the typed writes
        below (so the contract's own are reached), and return its confirmed receipt; a revert
        raises the contract's typed error with ``details["tx_hash"]``."""
        self.check_identity()
        data = self.abi.encode_call(name, *args)
        if name not in GAS_LIMITS:
            raise ValueError(f"{name!r} is not a write of the contract; call it with call()")
        tx = {"to": self.address, "data": to_hex(data), "gas": GAS_LIMITS[name]}
        return self.transactions.execute(tx)

    def register(self, request: RegisterRequest) -> RegistrationResult:
        """Anchor a checkpoint. Re-sending an identical record reports it as already registered."""
        args = (
            request.digest.raw,
            request.accuracy_bps,
            request.test_set_digest.raw,
            request.card_digest.raw,
            (request.parent or ZERO).raw,
        )
        try:
            receipt = self.transact("register", *args)
        except AlreadyRegistered as exc:
            existing = self.get(request.digest)
            if existing is None or not self._same_registration(existing, request, exc.registrant):
                raise
            return RegistrationResult(
                existing,
                existing.registration_tx,
                existing.registered_block,
                None,
                already_registered=True,
            )
        # The receipt's own event is the record as of its block: no further round trips.
        event = self.abi.registration_in(receipt, request.digest)
        if event is None or event.registrant != self.account.address:  # type: ignore[union-attr]
            raise ChainError(f"registration of {request.digest.short} mined without its event")
        self.events.remember(event)
        return RegistrationResult(
            event.to_record(),
            event.tx_hash,
            event.block_number,
            int(receipt["gasUsed"]),
        )

    def _same_registration(self, existing: ModelRecord, request: RegisterRequest, by: str) -> bool:
        return (
            self.account is not None
            and by == self.account.address
            and existing.accuracy_bps == request.accuracy_bps
            and existing.test_set_digest == request.test_set_digest
            and existing.card_digest == request.card_digest
            and existing.parent == request.parent
        )

    def revoke(
        self, digest: Digest, reason: RevocationReason, replacement: Digest | None = None
    ) -> ModelRecord:
        self.transact("revoke", digest.raw, int(reason), (replacement or ZERO).raw)
        record = self.get(digest)
        if record is None:
            raise UnknownModel(digest.raw)
        return record

    def grant_role(self, role: Role, account: str) -> str:
        return to_hex(self.transact("grantRole", int(role), checksum(account))["transactionHash"])

    def remove_role(self, role: Role, account: str) -> str:
        return to_hex(self.transact("removeRole", int(role), checksum(account))["transactionHash"])

    def renounce_role(self, role: Role) -> str:
        return to_hex(self.transact("renounceRole", int(role))["transactionHash"])

    def transfer_admin(self, new_admin: str) -> str:
        return to_hex(self.transact("transferAdmin", checksum(new_admin))["transactionHash"])

    def accept_admin(self) -> str:
        return to_hex(self.transact("acceptAdmin")["transactionHash"])

    # ------------------------------------------------------------------------------------
    # Batches: one Merkle root anchors many records (registry.core.batches)
    # ------------------------------------------------------------------------------------

    def register_batch(self, root: bytes, count: int, manifest_digest: Digest) -> BatchRecord:
        """Anchor the root of a batch of ``count`` leaves and the digest of its manifest."""
        receipt = self.transact("registerBatch", root, count, manifest_digest.raw)
        event = next(
            (
                BatchRegisteredEvent.from_log(log)
                for log in receipt["logs"]
                if to_hex(log["topics"][0]) == self.abi.batch_registered_topic
                and to_bytes(log["topics"][1]) == root
            ),
            None,
        )
        if event is None:
            raise ChainError(f"batch 0x{root.hex()} mined without its event")
        return self._batch_record(event, 0)

    def anchored_among(self, digests: Sequence[Digest]) -> list[tuple[Digest, str]]:
        """Those of ``digests`` that already have a record on chain, each with how: "registered"
        (on its own) or "revoked" (a withdrawn batch leaf). One JSON-RPC batch of ``lookup``
        calls per 256 digests, so checking a batch of a thousand costs a few round trips."""
        self.check_identity()
        lookup = self.abi.function("lookup")
        found: list[tuple[Digest, str]] = []
        for start in range(0, len(digests), ANCHORED_CHUNK):
            chunk = digests[start : start + ANCHORED_CHUNK]
            raw = self.rpc.eth_calls(
                [{"to": self.address, "data": to_hex(lookup.encode(d.raw))} for d in chunk]
            )
            for wanted, answer in zip(chunk, raw, strict=True):
                if not answer:
                    self.identity.forget()  # code vanished between checks: fail closed
                    raise ContractMismatch(
                        self.address, "returned nothing; it may hold no contract"
                    )
                stored = lookup.decode(answer)[0]
                if int(stored[0], 16) != 0:
                    found.append((wanted, "registered"))
                elif int(stored[2]) != 0:  # a tombstone: revoked as a batch leaf
                    found.append((wanted, "revoked"))
        return found

    def batch(self, root: bytes) -> tuple[BatchRecord | None, int]:
        """The batch of ``root`` (None if unknown) and the block whose state answered."""
        return self._batch_from(root, self.call("lookupBatch", root))

    def batch_and_validity(
        self, root: bytes, leaf: ModelLeaf, proof: Sequence[bytes]
    ) -> tuple[BatchRecord | None, int, bool]:
        """``batch(root)`` and ``is_valid_in_batch`` in one round trip to the node: what
        verifying a batched checkpoint asks. The second call answers at the first's block or a
        later one; revocation is one-way, so a "valid" then was valid at the first's block."""
        self.check_identity()
        lookup, valid = self.abi.function("lookupBatch"), self.abi.function("isValidInBatch")
        raw = self.rpc.eth_calls(
            [
                {"to": self.address, "data": to_hex(lookup.encode(root))},
                {"to": self.address, "data": to_hex(valid.encode(root, leaf, list(proof)))},
            ]
        )
        if not raw[0] or not raw[1]:
            self.identity.forget()  # code vanished between checks: fail closed
            raise ContractMismatch(self.address, "returned nothing; it may hold no contract now")
        batch, block = self._batch_from(root, lookup.decode(raw[0]))
        return batch, block, bool(valid.decode(raw[1])[0])

    def _batch_from(self, root: bytes, answer: tuple[Any, ...]) -> tuple[BatchRecord | None, int]:
        stored, block, chain_id = answer
        identity = self.identity.last
        expected = self.expected_chain_id or (identity.chain_id if identity else None)
        if expected is not None and chain_id != expected:
            self.identity.forget()
            raise WrongChain(expected, int(chain_id), self.endpoint)
        registrant, registered_at, registered_block, reason = stored
        if int(registrant, 16) == 0:
            return None, int(block)
        # The event is read once per registration as storage states it: a reorg that moved or
        # re-signed it changes the key. What else the event says (count, manifest digest) the
        # root itself commits to, so a cached one can never vouch for other leaves.
        key = (bytes(root), str(registrant).lower(), int(registered_at), int(registered_block))
        event = self._batch_events.get(key)
        if event is None:
            logs = self.events.logs(
                [self.abi.batch_registered_topic, to_hex(root)],
                int(registered_block),
                int(registered_block),
            )
            if not logs:
                # Storage names a block whose event the node does not have: fail closed.
                raise ChainError(
                    f"batch 0x{root.hex()} is stored but block {registered_block} holds no "
                    "BatchRegistered event for it; the node may be pruned or reorganising"
                )
            event = BatchRegisteredEvent.from_log(logs[-1])
            if len(self._batch_events) >= MAX_CACHED_BATCH_EVENTS:
                self._batch_events.clear()
            self._batch_events[key] = event
        return self._batch_record(event, int(reason)), int(block)

    @staticmethod
    def _batch_record(event: BatchRegisteredEvent, reason: int) -> BatchRecord:
        return BatchRecord(
            root=event.root,
            registrant=event.registrant,
            registered_at=event.registered_at,
            registered_block=event.block_number,
            count=event.count,
            manifest_digest=event.manifest_digest,
            registration_tx=event.tx_hash,
            revocation_reason=RevocationReason(reason) if reason else None,
        )

    def is_valid_in_batch(self, root: bytes, leaf: ModelLeaf, proof: Sequence[bytes]) -> bool:
        """The contract's own answer: batch anchored and unrevoked, the proof right, the digest
        neither revoked nor registered on its own."""
        return bool(self.call("isValidInBatch", root, leaf, list(proof))[0])

    def revoke_batch(self, root: bytes, reason: RevocationReason) -> str:
        return to_hex(self.transact("revokeBatch", root, int(reason))["transactionHash"])

    def revoke_leaf(
        self, root: bytes, leaf: ModelLeaf, proof: Sequence[bytes], reason: RevocationReason
    ) -> str:
        receipt = self.transact("revokeLeaf", root, leaf, list(proof), int(reason))
        return to_hex(receipt["transactionHash"])

    def leaf_revocation(self, digest: Digest) -> tuple[RevocationReason, int] | None:
        """(reason, time) when ``digest`` was revoked without a single record (a batch leaf)."""
        stored, _block, _chain, _hash = self.call("lookup", digest.raw)
        reason, revoked_at = int(stored[6]), int(stored[4])
        return (RevocationReason(reason), revoked_at) if reason else None
