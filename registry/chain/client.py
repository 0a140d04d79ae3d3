"""RegistryClient: the one place the registry talks to a chain, and where web3 errors are translated.

Two kinds of chain sit behind the same client: ``memory`` (eth-tester in-process; state dies with
the process) and any JSON-RPC URL, where transactions are signed with a locally held key. The
client checks the chain id and the contract's runtime code before answering anything (fail closed),
keeps one nonce counter per key so many threads can register at once, checks every receipt,
waits for the configured confirmations, and decodes the contract's custom errors on both backends.

Hot paths avoid web3's contract layer: calldata is encoded once per call with cached selectors and
results are decoded with eth-abi, so a lookup is one ``eth_call`` with little Python on top.
"""

from __future__ import annotations

import ast
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import requests
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import event_abi_to_log_topic, function_signature_to_4byte_selector
from eth_utils import to_checksum_address as checksum
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ProviderConnectionError,
    TransactionNotFound,
    Web3RPCError,
)

from registry.chain.artifacts import ContractArtifact, load_artifact
from registry.chain.deployments import Deployment
from registry.chain.reverts import AlreadyRegistered, RevertDecoder, UnknownModel
from registry.chain.signing import Eip1559Signer
from registry.core.digest import ZERO, Digest
from registry.core.records import (
    HistoryEvent,
    ModelRecord,
    RegisterRequest,
    RegistrationResult,
    Revocation,
    RevocationReason,
    Role,
)
from registry.errors import (
    ChainError,
    ChainUnavailable,
    ConfigurationError,
    ContractMismatch,
    ContractRevert,
    TransactionFailed,
    WrongChain,
)

T = TypeVar("T")

# Gas limits are fixed rather than estimated: estimating costs a round trip per transaction.
# Each is ~1.5x the measured cost; a transaction that reverts is explained after the fact.
GAS_LIMITS = {
    "register": 90_000,
    "revoke": 110_000,
    "grantRole": 80_000,
    "removeRole": 60_000,
    "renounceRole": 60_000,
    "transferAdmin": 60_000,
    "acceptAdmin": 60_000,
}
DEPLOY_GAS = 1_800_000
PRIORITY_FEE_WEI = 1_000_000_000
FEE_CACHE_S = 2.0
LOG_CHUNK_BLOCKS = 50_000
BLOCKHASH_WINDOW = 256  # the EVM's blockhash sees only the 256 blocks before the current one
# How often a slow wait for a receipt asks whether the transaction is stuck behind a nonce gap.
GAP_CHECK_S = 1.0


class NonceGap(TransactionFailed):
    """Our transaction waits behind a nonce the chain no longer has: it can never be mined."""

    code = "nonce_gap"


def _hex(value: bytes | str) -> str:
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


def _bytes(value: bytes | str) -> bytes:
    return bytes(HexBytes(value))


@dataclass(frozen=True)
class _Function:
    selector: bytes
    inputs: list[str]
    outputs: list[str]


def _abi_type(entry: dict[str, Any]) -> str:
    if entry["type"].startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in entry["components"]) + ")" + entry["type"][5:]
    return str(entry["type"])


@dataclass(frozen=True)
class ChainIdentity:
    chain_id: int
    address: str
    head: int


class RegistryClient:
    """Typed operations on one deployed ModelRegistry contract."""

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
        endpoint: str = "memory",
        artifact: ContractArtifact | None = None,
    ) -> None:
        self.w3 = w3
        self.address = checksum(address)
        self.deployment_block = deployment_block
        self.expected_chain_id = expected_chain_id
        self.account = account
        self.confirmations = confirmations
        self.tx_timeout_s = tx_timeout_s
        self.identity_ttl_s = identity_ttl_s
        self.endpoint = endpoint
        self.artifact = artifact or load_artifact()
        self._decoder = RevertDecoder(self.artifact.abi)
        self._functions = {
            e["name"]: _Function(
                selector=function_signature_to_4byte_selector(
                    f"{e['name']}({','.join(_abi_type(i) for i in e['inputs'])})"
                ),
                inputs=[_abi_type(i) for i in e["inputs"]],
                outputs=[_abi_type(o) for o in e["outputs"]],
            )
            for e in self.artifact.abi
            if e["type"] == "function"
        }
        events = {e["name"]: e for e in self.artifact.abi if e["type"] == "event"}
        self._topic_registered = _hex(event_abi_to_log_topic(events["ModelRegistered"]))  # type: ignore[arg-type]
        self._topic_revoked = _hex(event_abi_to_log_topic(events["ModelRevoked"]))  # type: ignore[arg-type]
        # eth-tester is not thread-safe; a real node is, and HTTP calls then run concurrently.
        self._io_lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if endpoint == "memory" else contextlib.nullcontext()
        )
        # Re-entrant: a connection error inside reserve_nonce() (nonce, fees or the send itself)
        # reaches _forget_session(), which takes this lock again on the same thread.
        self._nonce_lock = threading.RLock()
        self._next_nonce: int | None = None
        self._signer: Eip1559Signer | None = None
        self._fees: tuple[float, dict[str, int]] | None = None
        self._identity: tuple[float, ChainIdentity] | None = None
        self._event_cache: dict[tuple[Digest, int], dict[str, Any]] = {}

    # ------------------------------------------------------------------------------------
    # Translation: every web3 call goes through here.
    # ------------------------------------------------------------------------------------

    def _io(self, fn: Callable[[], T]) -> T:
        try:
            with self._io_lock:
                return fn()
        except TransactionNotFound:
            raise  # "not mined yet" is an answer, not a failure: the poller handles it
        except ContractCustomError as exc:
            raise self._decoder.decode(_bytes(str(exc.data))) from exc
        except ContractLogicError as exc:
            data = exc.data if isinstance(exc.data, str) and exc.data.startswith("0x") else None
            if data and len(data) > 2:
                raise self._decoder.decode(_bytes(data)) from exc
            raise ContractRevert(f"the contract reverted: {exc.message}") from exc
        except (requests.exceptions.RequestException, ProviderConnectionError, OSError) as exc:
            self._forget_session()
            raise ChainUnavailable(self.endpoint, exc.__class__.__name__) from exc
        except Web3RPCError as exc:
            raise ChainError(
                f"the node at {self.endpoint} refused the request: {exc.message}"
            ) from exc
        except Exception as exc:
            if exc.__class__.__name__ == "ValidationError":  # eth-tester refusing a transaction
                raise ChainError(f"the chain refused the request: {exc}") from exc
            revert = _eth_tester_revert(exc)
            if revert is None:
                raise
            raise self._decoder.decode(revert) from exc

    def _forget_session(self) -> None:
        self._identity = None
        with self._nonce_lock:
            self._next_nonce = None

    # ------------------------------------------------------------------------------------
    # Identity: the right chain, and our contract's code at the address.
    # ------------------------------------------------------------------------------------

    def check_identity(self, *, force: bool = False) -> ChainIdentity:
        """Chain id and runtime code as expected, re-checked at most every ``identity_ttl_s``."""
        now = time.monotonic()
        if not force and self._identity and now - self._identity[0] < self.identity_ttl_s:
            return self._identity[1]
        chain_id = self._io(lambda: self.w3.eth.chain_id)
        if self.expected_chain_id is not None and chain_id != self.expected_chain_id:
            raise WrongChain(self.expected_chain_id, chain_id, self.endpoint)
        code = bytes(self._io(lambda: self.w3.eth.get_code(self.address)))
        if not code:
            raise ContractMismatch(self.address, f"holds no contract code on chain {chain_id}")
        if code != self.artifact.deployed_bytecode:
            raise ContractMismatch(
                self.address, f"holds code that is not this ModelRegistry build on chain {chain_id}"
            )
        identity = ChainIdentity(chain_id, self.address, self._io(lambda: self.w3.eth.block_number))
        self._identity = (now, identity)
        return identity

    @property
    def chain_id(self) -> int:
        return self.check_identity().chain_id

    def head(self) -> int:
        return int(self._io(lambda: self.w3.eth.block_number))

    # ------------------------------------------------------------------------------------
    # Reads
    # ------------------------------------------------------------------------------------

    def _call(self, name: str, *args: Any, block: int | str = "latest") -> tuple[Any, ...]:
        self.check_identity()
        fn = self._functions[name]
        data = fn.selector + abi_encode(fn.inputs, args)
        tx = {"to": self.address, "data": _hex(data)}
        raw = bytes(self._io(lambda: self.w3.eth.call(tx, block)))  # type: ignore[arg-type]
        if not raw and fn.outputs:
            # Code vanished between checks (node swapped or reset): fail closed.
            self._identity = None
            raise ContractMismatch(self.address, "returned nothing; it may hold no contract now")
        return tuple(abi_decode(fn.outputs, raw))

    def lookup(self, digest: Digest) -> tuple[ModelRecord | None, int]:
        """The current record (None if unknown) and the block whose state answered: one call."""
        stored, block, chain_id, block_hash = self._call("lookup", digest.raw)
        # The chain id comes with every answer, so a node swapped for another chain between two
        # identity checks is caught on its first answer, not after the identity TTL.
        identity = self._identity[1] if self._identity else None
        expected = self.expected_chain_id or (identity.chain_id if identity else None)
        if expected is not None and chain_id != expected:
            self._identity = None
            raise WrongChain(expected, int(chain_id), self.endpoint)
        exists = int(stored[0], 16) != 0  # registrant; a timestamp is never the sentinel
        if not exists:
            return None, int(block)
        return self._record_from_storage(digest, stored, int(block), bytes(block_hash)), int(block)

    def get(self, digest: Digest) -> ModelRecord | None:
        return self.lookup(digest)[0]

    def is_valid(self, digest: Digest) -> bool:
        return bool(self._call("isValid", digest.raw)[0])

    def has_role(self, role: Role, account: str) -> bool:
        return bool(self._call("hasRole", int(role), checksum(account))[0])

    def admin(self) -> tuple[str, str | None]:
        pending = self._call("pendingAdmin")[0]
        admin = checksum(self._call("admin")[0])
        return admin, (None if int(pending, 16) == 0 else checksum(pending))

    def _record_from_storage(
        self, digest: Digest, stored: Sequence[Any], head: int, block_hash: bytes
    ) -> ModelRecord:
        registrant, registered_at, registered_block, accuracy, revoked_at, revoked_block = stored[
            :6
        ]
        reason, replacement = stored[6], stored[7]
        event = self._registration_event(
            digest,
            int(registered_block),
            (checksum(registrant), int(registered_at), int(accuracy)),
            head=head,
            block_hash=block_hash,
        )
        revocation = None
        if reason:  # the reason code, never the time, says whether it is revoked
            revocation = Revocation(
                revoked_at=int(revoked_at),
                block_number=int(revoked_block),
                reason=RevocationReason(int(reason)),
                replacement=None if replacement == bytes(32) else Digest.from_bytes(replacement),
                **self._revocation_actor(digest, int(revoked_block)),
            )
        return ModelRecord(
            digest=digest,
            registrant=checksum(registrant),
            registered_at=int(registered_at),
            registered_block=int(registered_block),
            accuracy_bps=int(accuracy),
            test_set_digest=event["test_set_digest"],
            card_digest=event["card_digest"],
            parent=event["parent"],
            registration_tx=event["tx_hash"],
            revocation=revocation,
        )

    def _registration_event(
        self,
        digest: Digest,
        block: int,
        stored: tuple[str, int, int],
        *,
        head: int,
        block_hash: bytes,
    ) -> dict[str, Any]:
        """The digests kept only in the ModelRegistered event, cached by block.

        A reorg can put another registration of the digest at the same height, even one with
        the same registrant, time and accuracy (``stored``, from storage) but another card. So a
        cached event is used only if storage agrees with it and its block is still the one the
        chain holds at that height: ``block_hash`` is the contract's ``blockhash`` of it. That
        hash is zero for the answering block ``head`` itself (then the event is read again) and
        for blocks over 256 back, past any reorg this client follows.
        """
        if block > head:
            # Impossible on a consistent node: seen with anvil restarted from a state file that
            # it saved while still committing a block (storage kept, the block lost).
            raise ChainError(
                f"the record of {digest.short} names block {block}, past the chain's head "
                f"({head}): the node's state and its blocks disagree. Restart the node from a "
                "consistent state (or a backup of its state file), then try again"
            )
        key = (digest, block)
        cached = self._event_cache.get(key)
        if cached is not None:
            same_block = block_hash == cached["block_hash"] or (
                block_hash == bytes(32) and block < head - BLOCKHASH_WINDOW
            )
            same_fields = (
                cached["registrant"],
                cached["registered_at"],
                cached["accuracy_bps"],
            ) == stored
            if same_block and same_fields:
                return cached
        logs = self._logs([self._topic_registered, digest.raw], block, block)
        if not logs:
            raise ChainError(
                f"the record of {digest.short} names block {block} but that block holds no "
                "registration event; the node may be out of sync or reorganising, try again"
            )
        event = self._decode_registered(logs[-1])
        self._event_cache[key] = event
        return event

    def _revocation_actor(self, digest: Digest, block: int) -> dict[str, Any]:
        logs = self._logs([self._topic_revoked, digest.raw], block, block)
        if not logs:
            return {}
        log = logs[-1]
        return {
            "revoker": _topic_address(log["topics"][2]),
            "tx_hash": _hex(log["transactionHash"]),
        }

    def _logs(
        self, topics: list[Any], from_block: int, to_block: int | str = "latest"
    ) -> list[dict[str, Any]]:
        # Logs carry no identity check of their own: without this, "no matching event" from the
        # wrong chain or address would read as "none registered" instead of failing closed.
        self.check_identity()
        wanted = [_topic_filter(t) for t in topics]
        last = self.head() if to_block == "latest" else int(to_block)
        found: list[dict[str, Any]] = []
        start = max(from_block, self.deployment_block)
        while start <= last:
            end = min(start + LOG_CHUNK_BLOCKS - 1, last)
            params = {"address": self.address, "fromBlock": start, "toBlock": end, "topics": wanted}
            found.extend(self._io(lambda p=params: self.w3.eth.get_logs(p)))  # type: ignore[misc, arg-type]
            start = end + 1
        return found

    def _decode_registered(self, log: dict[str, Any]) -> dict[str, Any]:
        accuracy, test_set, card, registered_at = abi_decode(
            ["uint16", "bytes32", "bytes32", "uint40"], _bytes(log["data"])
        )
        parent = _bytes(log["topics"][3])
        return {
            "digest": Digest.from_bytes(_bytes(log["topics"][1])),
            "registrant": _topic_address(log["topics"][2]),
            "parent": None if parent == bytes(32) else Digest.from_bytes(parent),
            "accuracy_bps": int(accuracy),
            "test_set_digest": Digest.from_bytes(test_set),
            "card_digest": Digest.from_bytes(card),
            "registered_at": int(registered_at),
            "tx_hash": _hex(log["transactionHash"]),
            "block_number": int(log["blockNumber"]),
            "block_hash": _bytes(log["blockHash"]),
            "log_index": int(log["logIndex"]),
        }

    def history(self, digest: Digest | None = None) -> list[HistoryEvent]:
        """Every registration and revocation (of one checkpoint, or all), in chain order."""
        topic = None if digest is None else digest.raw
        events: list[HistoryEvent] = []
        for log in self._logs([[self._topic_registered, self._topic_revoked], topic], 0):
            if _hex(log["topics"][0]) == self._topic_registered:
                e = self._decode_registered(log)
                details = {
                    "accuracy_bps": e["accuracy_bps"],
                    "test_set_digest": str(e["test_set_digest"]),
                    "card_digest": str(e["card_digest"]),
                    "parent": str(e["parent"]) if e["parent"] else None,
                }
                events.append(
                    HistoryEvent(
                        kind="registered",
                        digest=e["digest"],
                        block_number=e["block_number"],
                        tx_hash=e["tx_hash"],
                        log_index=e["log_index"],
                        actor=e["registrant"],
                        timestamp=e["registered_at"],
                        details=details,
                    )
                )
            else:
                reason, revoked_at = abi_decode(["uint8", "uint40"], _bytes(log["data"]))
                replacement = _bytes(log["topics"][3])
                details = {
                    "reason": RevocationReason(reason).label,
                    "replacement": None
                    if replacement == bytes(32)
                    else str(Digest.from_bytes(replacement)),
                }
                events.append(
                    HistoryEvent(
                        kind="revoked",
                        digest=Digest.from_bytes(_bytes(log["topics"][1])),
                        block_number=int(log["blockNumber"]),
                        tx_hash=_hex(log["transactionHash"]),
                        log_index=int(log["logIndex"]),
                        actor=_topic_address(log["topics"][2]),
                        timestamp=int(revoked_at),
                        details=details,
                    )
                )
        events.sort(key=lambda ev: (ev.block_number, ev.log_index))
        return events

    def list_models(
        self, *, registrant: str | None = None, valid: bool | None = None
    ) -> list[ModelRecord]:
        """Records of every registered checkpoint, optionally filtered, oldest first."""
        topics: list[Any] = [self._topic_registered, None]
        if registrant is not None:
            topics.append("0x" + checksum(registrant)[2:].lower().rjust(64, "0"))
        records = []
        for log in self._logs(topics, 0):
            record = self.get(Digest.from_bytes(_bytes(log["topics"][1])))
            if record is not None and (valid is None or record.valid == valid):
                records.append(record)
        return records

    def children(self, digest: Digest) -> list[Digest]:
        """Checkpoints registered with ``digest`` as their parent (indexed event topic)."""
        logs = self._logs([self._topic_registered, None, None, digest.raw], 0)
        return [Digest.from_bytes(_bytes(log["topics"][1])) for log in logs]

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
            receipt = self._transact("register", *args)
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
        event = next(
            (
                self._decode_registered(log)
                for log in receipt["logs"]
                if _hex(log["topics"][0]) == self._topic_registered
                and _bytes(log["topics"][1]) == request.digest.raw
            ),
            None,
        )
        if event is None or checksum(event["registrant"]) != self.account.address:  # type: ignore[union-attr]
            raise ChainError(f"registration of {request.digest.short} mined without its event")
        self._event_cache[(request.digest, event["block_number"])] = event
        record = ModelRecord(
            digest=request.digest,
            registrant=event["registrant"],
            registered_at=event["registered_at"],
            registered_block=event["block_number"],
            accuracy_bps=event["accuracy_bps"],
            test_set_digest=event["test_set_digest"],
            card_digest=event["card_digest"],
            parent=event["parent"],
            registration_tx=event["tx_hash"],
        )
        return RegistrationResult(
            record, event["tx_hash"], event["block_number"], int(receipt["gasUsed"])
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
        self._transact("revoke", digest.raw, int(reason), (replacement or ZERO).raw)
        record = self.get(digest)
        if record is None:
            raise UnknownModel(digest.raw)
        return record

    def grant_role(self, role: Role, account: str) -> str:
        return _hex(self._transact("grantRole", int(role), checksum(account))["transactionHash"])

    def remove_role(self, role: Role, account: str) -> str:
        return _hex(self._transact("removeRole", int(role), checksum(account))["transactionHash"])

    def renounce_role(self, role: Role) -> str:
        return _hex(self._transact("renounceRole", int(role))["transactionHash"])

    def transfer_admin(self, new_admin: str) -> str:
        return _hex(self._transact("transferAdmin", checksum(new_admin))["transactionHash"])

    def accept_admin(self) -> str:
        return _hex(self._transact("acceptAdmin")["transactionHash"])

    def _transact(self, name: str, *args: Any) -> dict[str, Any]:
        self.check_identity()
        fn = self._functions[name]
        data = fn.selector + abi_encode(fn.inputs, args)
        tx: dict[str, Any] = {"to": self.address, "data": _hex(data), "gas": GAS_LIMITS[name]}
        tx_hash, nonce = self._send(tx)
        try:
            receipt = self.wait_for_receipt(tx_hash, nonce=nonce)
        except NonceGap:
            # An earlier transaction of ours vanished (a reorg): this one can never be mined
            # before it. Send it once more at the nonce the chain expects; should the queued
            # copy ever run, the contract refuses it as a duplicate.
            tx_hash, nonce = self._send(tx)
            receipt = self.wait_for_receipt(tx_hash, nonce=nonce)
        if int(receipt["status"]) != 1:
            raise self._explain_failure(tx, receipt)
        return receipt

    def wait_for_receipt(self, tx_hash: str, *, nonce: int | None = None) -> dict[str, Any]:
        """Poll for the receipt, then for the configured confirmations; reorg-safe.

        Given the transaction's ``nonce``, a wait of over a second also asks whether the
        transaction is stuck behind a nonce the chain no longer has, and raises NonceGap if so.
        """
        started = time.monotonic()
        deadline = started + self.tx_timeout_s
        next_gap_check = started + GAP_CHECK_S
        delay = 0.001
        while True:
            with contextlib.suppress(TransactionNotFound):
                receipt = dict(self._io(lambda: self.w3.eth.get_transaction_receipt(tx_hash)))  # type: ignore[arg-type]
                if receipt.get("blockNumber") is not None and self._confirmed(receipt):
                    return receipt
            if nonce is not None and time.monotonic() > next_gap_check:
                next_gap_check = time.monotonic() + GAP_CHECK_S
                self._raise_if_behind_a_gap(tx_hash, nonce)
            if time.monotonic() > deadline:
                # It may be queued behind a nonce the chain never saw (a reorg dropped an earlier
                # transaction of ours): the next write reads the nonce from the node again.
                with self._nonce_lock:
                    self._next_nonce = None
                raise TransactionFailed(
                    tx_hash,
                    f"was not mined with {self.confirmations} confirmation(s) within "
                    f"{self.tx_timeout_s:.0f} s; it may still be pending: check it later with "
                    "`registry show` before resending",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _raise_if_behind_a_gap(self, tx_hash: str, nonce: int) -> None:
        assert self.account is not None
        address = self.account.address
        executable = int(self._io(lambda: self.w3.eth.get_transaction_count(address, "pending")))
        if executable < nonce:
            with self._nonce_lock:
                self._next_nonce = None
            raise NonceGap(
                tx_hash,
                f"can never be mined: it has nonce {nonce} but the chain expects {executable} "
                "(an earlier transaction was dropped, e.g. by a reorg)",
            )

    def _confirmed(self, receipt: dict[str, Any]) -> bool:
        if self.confirmations <= 1:
            return True
        return self.head() >= int(receipt["blockNumber"]) + self.confirmations - 1

    def _explain_failure(self, tx: dict[str, Any], receipt: dict[str, Any]) -> ChainError:
        """A mined, reverted transaction: replay it as a call to recover the custom error."""
        tx_hash = _hex(receipt["transactionHash"])
        call = {
            "from": self.account.address if self.account else None,
            "to": tx["to"],
            "data": tx["data"],
            "gas": tx["gas"],
        }
        traced = self._traced_revert(tx_hash)
        if traced is not None:
            error = self._decoder.decode(traced)
            error.details["tx_hash"] = tx_hash
            return error
        # No tracer (eth-tester, some nodes): replay on the block's final state, where an
        # earlier transaction of the same block has already run, then on its parent's.
        block = int(receipt["blockNumber"])
        for at in (block, block - 1):
            try:
                self._io(lambda b=at: self.w3.eth.call(call, b))  # type: ignore[misc, arg-type]
            except ContractRevert as exc:
                exc.details["tx_hash"] = tx_hash
                return exc
        return TransactionFailed(tx_hash, "reverted without a recognisable reason (out of gas?)")

    def _traced_revert(self, tx_hash: str) -> bytes | None:
        """The exact revert data of a mined transaction, where the node offers a call tracer."""
        if self.endpoint == "memory":
            return None
        try:
            response = self.w3.provider.make_request(
                "debug_traceTransaction",  # type: ignore[arg-type]
                [tx_hash, {"tracer": "callTracer"}],
            )
        except (requests.exceptions.RequestException, Web3RPCError, ValueError, OSError):
            return None  # no tracer, or it failed: replay instead
        output = (
            (response.get("result") or {}).get("output") if isinstance(response, dict) else None
        )
        return _bytes(output) if isinstance(output, str) and len(output) > 2 else None

    # ------------------------------------------------------------------------------------
    # Fees and nonces (one writer per key)
    # ------------------------------------------------------------------------------------

    def fee_fields(self) -> dict[str, int]:
        now = time.monotonic()
        if self._fees and now - self._fees[0] < FEE_CACHE_S:
            return self._fees[1]
        block = self._io(lambda: self.w3.eth.get_block("latest"))
        base = block.get("baseFeePerGas")
        if base is None:
            fields = {"gasPrice": int(self._io(lambda: self.w3.eth.gas_price))}
        else:
            fields = {
                "maxFeePerGas": 2 * int(base) + PRIORITY_FEE_WEI,
                "maxPriorityFeePerGas": PRIORITY_FEE_WEI,
            }
        self._fees = (now, fields)
        return fields

    def _send(self, tx: dict[str, Any]) -> tuple[str, int]:
        """Sign ``tx`` at the next nonce and send it: (tx hash, nonce)."""
        for attempt in (1, 2):
            try:
                with self.reserve_nonce() as nonce:
                    raw = self.sign(tx, nonce)
                    sent: bytes = self._io(partial(self.w3.eth.send_raw_transaction, raw))
                    return _hex(sent), nonce
            except ChainError as exc:
                text = str(exc).lower()
                if attempt == 1 and ("nonce" in text or "underpriced" in text or "fee" in text):
                    self._fees = None
                    continue
                raise
        raise AssertionError("unreachable")

    def sign(self, tx: dict[str, Any], nonce: int) -> bytes:
        """Raw signed bytes of ``tx`` (to, data, gas) at ``nonce`` with current fees."""
        assert self.account is not None  # reserve_nonce() refused already
        fees = self.fee_fields()
        chain_id = self.check_identity().chain_id
        if "maxFeePerGas" in fees:
            if self._signer is None:
                self._signer = Eip1559Signer(bytes(self.account.key))
            return self._signer.sign(
                chain_id=chain_id,
                nonce=nonce,
                max_priority_fee_per_gas=fees["maxPriorityFeePerGas"],
                max_fee_per_gas=fees["maxFeePerGas"],
                gas=tx["gas"],
                to=None if tx.get("to") is None else _bytes(tx["to"]),
                data=_bytes(tx["data"]),
            ).raw
        legacy = {**tx, **fees, "nonce": nonce, "chainId": chain_id}
        if legacy.get("to") is None:
            legacy.pop("to", None)
        raw: bytes = self.account.sign_transaction(legacy).raw_transaction  # type: ignore[arg-type]
        return raw

    @contextlib.contextmanager
    def reserve_nonce(self) -> Iterator[int]:
        """Hand out the next nonce; it is consumed only if the block exits without error."""
        if self.account is None:
            raise ConfigurationError(
                "this operation sends a transaction but no signing key is configured; set "
                "REGISTRY_PRIVATE_KEY or REGISTRY_KEYSTORE (+ REGISTRY_KEYSTORE_PASSWORD)"
            )
        with self._nonce_lock:
            if self._next_nonce is None:
                address = self.account.address
                self._next_nonce = int(
                    self._io(lambda: self.w3.eth.get_transaction_count(address, "pending"))
                )
            nonce = self._next_nonce
            try:
                yield nonce
            except BaseException:
                self._next_nonce = None  # resynchronise from the node next time
                raise
            self._next_nonce = nonce + 1


def send_transaction(client: RegistryClient, tx: dict[str, Any]) -> str:
    """Sign ``tx`` with the client's key at the next nonce and send it; returns the tx hash."""
    return client._send(tx)[0]


def _topic_filter(topic: Any) -> Any:
    if topic is None or isinstance(topic, str):
        return topic
    if isinstance(topic, list):
        return [_topic_filter(t) for t in topic]
    return _hex(topic)


def _topic_address(topic: bytes | str) -> str:
    return checksum("0x" + _bytes(topic)[-20:].hex())


def _eth_tester_revert(exc: Exception) -> bytes | None:
    """eth-tester raises TransactionFailed('execution reverted: b"..."') with the revert bytes."""
    if exc.__class__.__name__ != "TransactionFailed":
        return None
    for arg in exc.args:
        if isinstance(arg, bytes | bytearray):
            return bytes(arg)
        if isinstance(arg, str) and ": b" in arg:
            with contextlib.suppress(ValueError, SyntaxError):
                value = ast.literal_eval(arg.split(": ", 1)[1])
                if isinstance(value, bytes):
                    return value
    return b""


def deploy_contract(
    w3: Web3,
    account: LocalAccount,
    *,
    endpoint: str,
    admin: str | None = None,
    artifact: ContractArtifact | None = None,
    confirmations: int = 1,
    tx_timeout_s: float = 120.0,
) -> tuple[RegistryClient, Deployment]:
    """Deploy a fresh ModelRegistry (``admin`` defaults to the deployer) and return its client."""
    artifact = artifact or load_artifact()
    admin = checksum(admin or account.address)
    chain_id = int(w3.eth.chain_id)
    # A throwaway client at a placeholder address gives us the same fee, nonce and error paths.
    bootstrap = RegistryClient(
        w3,
        address="0x" + "00" * 20,
        account=account,
        confirmations=confirmations,
        tx_timeout_s=tx_timeout_s,
        endpoint=endpoint,
        artifact=artifact,
    )
    bootstrap._identity = (time.monotonic(), ChainIdentity(chain_id, bootstrap.address, 0))
    data = artifact.bytecode + abi_encode(["address"], [admin])
    tx_hash = send_transaction(bootstrap, {"to": None, "data": _hex(data), "gas": DEPLOY_GAS})
    receipt = bootstrap.wait_for_receipt(tx_hash)
    if int(receipt["status"]) != 1 or not receipt.get("contractAddress"):
        # Replay the creation as a call to report the constructor's own error (e.g. ZeroAddress).
        creation = {"from": account.address, "data": _hex(data), "gas": DEPLOY_GAS}
        bootstrap._io(lambda: w3.eth.call(creation, int(receipt["blockNumber"]) - 1))  # type: ignore[arg-type]
        raise TransactionFailed(tx_hash, "deploying the registry failed (status 0)")
    deployment = Deployment(
        chain_id=chain_id,
        address=checksum(receipt["contractAddress"]),
        tx_hash=tx_hash,
        block_number=int(receipt["blockNumber"]),
        deployer=account.address,
        artifact_digest=artifact.digest,
        solc_version=artifact.solc_version,
        source_digest=artifact.source_digest,
    )
    client = RegistryClient(
        w3,
        address=deployment.address,
        deployment_block=deployment.block_number,
        expected_chain_id=chain_id,
        account=account,
        confirmations=confirmations,
        tx_timeout_s=tx_timeout_s,
        endpoint=endpoint,
        artifact=artifact,
    )
    with bootstrap._nonce_lock:
        client._next_nonce = bootstrap._next_nonce
    client.check_identity(force=True)
    return client, deployment
