"""Sending transactions signed with a locally held key, and knowing when they count.

Many threads register through one client at once (the clinic service does), so the next nonce of
the key is handed out under a lock and consumed only by a send that went through; any failure
makes the next send ask the node again. Fees are cached for a moment because asking costs a round
trip per transaction. A receipt counts after the configured confirmations; a wait that runs long
asks whether the transaction sits behind a nonce the chain no longer has (a reorg dropped an
earlier one) and, if so, sends it once more. A mined transaction that reverted is explained by the
node's call tracer or, lacking one, by replaying it as a call, so the caller gets the contract's
typed error. A caller that shows a long wait sets ``Transactions.progress``: this layer prints
nothing, it hands over a ``WaitProgress`` now and then, including whether the node mines only
when a transaction arrives (then no further confirmation comes by itself).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

from registry.chain.abi import to_bytes, to_hex
from registry.chain.rpc import Rpc
from registry.chain.signing import Eip1559Signer
from registry.core.endpoint import MEMORY
from registry.errors import ChainError, ConfigurationError, ContractRevert, TransactionFailed

# Gas limits are fixed rather than estimated: estimating costs a round trip per transaction.
# Each is ~1.5x the measured cost; a transaction that reverts is explained after the fact.
GAS_LIMITS = {
    "register": 90_000,
    "revoke": 110_000,
    "registerBatch": 80_000,
    "revokeBatch": 60_000,
    # A proof of a million-leaf batch is 20 siblings: about 1 000 gas of hashing and calldata each.
    "revokeLeaf": 150_000,
    "attest": 85_000,
    "revokeAttestation": 45_000,
    # A registration by signature, plus room for an ERC-1271 wallet's own check of the signature.
    "registerBySig": 150_000,
    "cancelNonce": 60_000,
    # Measured on eth-tester: 69 057 for an account's first anchor (two fresh slots and the
    # event), 51 921 for a later one.
    "anchorAuditLog": 150_000,
    "grantRole": 80_000,
    "removeRole": 60_000,
    "renounceRole": 60_000,
    "transferAdmin": 60_000,
    "acceptAdmin": 60_000,
}
# Measured: 3 336 503 (15.2 kB of runtime code at 200 gas a byte is most of it).
DEPLOY_GAS = 4_500_000
PRIORITY_FEE_WEI = 1_000_000_000
FEE_CACHE_S = 2.0
# How often a slow wait for a receipt asks whether the transaction is stuck behind a nonce gap.
GAP_CHECK_S = 1.0
# A wait tells its caller (``Transactions.progress``) where it stands at most this often; the
# first sight of the mined block is told at once.
PROGRESS_EVERY_S = 3.0
# A mined transaction whose chain has not grown for this long makes the wait ask the node, once,
# whether it mines only when a transaction arrives: then the confirmations it lacks never come
# by themselves. Shorter than a public chain's block time would ask needlessly, which is harmless.
STALL_S = 3.0


class NonceGap(TransactionFailed):
    """Our transaction waits behind a nonce the chain no longer has: it can never be mined."""

    code = "nonce_gap"


class NonceCounter:
    """The next nonce of one key; share one between clients that sign with the same key."""

    def __init__(self) -> None:
        # Re-entrant: a connection error inside reserve() (nonce, fees or the send itself)
        # reaches forget(), which takes this lock again on the same thread.
        self._lock = threading.RLock()
        self._next: int | None = None

    @contextlib.contextmanager
    def reserve(self, ask_node: Callable[[], int]) -> Iterator[int]:
        """Hand out the next nonce (``ask_node`` when none is known); it is consumed only if the
        block exits without error, and forgotten if it does not."""
        with self._lock:
            if self._next is None:
                self._next = ask_node()
            nonce = self._next
            try:
                yield nonce
            except BaseException:
                self._next = None  # resynchronise from the node next time
                raise
            self._next = nonce + 1

    def forget(self) -> None:
        """Ask the node for the nonce before the next send."""
        with self._lock:
            self._next = None


@dataclass(frozen=True)
class SentTransaction:
    tx_hash: str
    nonce: int


@dataclass(frozen=True)
class WaitProgress:
    """Where a wait for a transaction stands, for a caller that shows it."""

    tx_hash: str
    confirmations: int  # needed, the transaction's own block included
    confirmed: int  # so far; 0 while it is not mined
    mined_block: int | None
    head: int | None  # the chain's latest block, when it was read
    waited_s: float
    timeout_s: float
    # True: the node mines a block only when a transaction arrives (anvil's or hardhat's
    # automine), so the missing confirmations come only with other transactions; None: unknown.
    mines_on_demand: bool | None


@dataclass
class _Wait:
    """What one wait has seen of its transaction, and when it last told its caller."""

    tx_hash: str
    confirmations: int
    timeout_s: float
    started: float
    mined_block: int | None = None
    head: int | None = None
    head_changed_at: float = 0.0
    mines_on_demand: bool | None = None
    asked_node: bool = False
    reported_at: float | None = None

    def saw(self, mined_block: int, head: int) -> bool:
        """Record the receipt's block and the chain's head; whether that is enough blocks."""
        if (mined_block, head) != (self.mined_block, self.head):
            self.head_changed_at = time.monotonic()
        self.mined_block, self.head = mined_block, head
        return head >= mined_block + self.confirmations - 1

    @property
    def confirmed(self) -> int:
        if self.mined_block is None or self.head is None:
            return 0
        return max(0, min(self.confirmations, self.head - self.mined_block + 1))

    def stalled(self) -> bool:
        return self.mined_block is not None and time.monotonic() - self.head_changed_at >= STALL_S

    def due(self) -> bool:
        now = time.monotonic()
        if self.reported_at is None:
            return self.mined_block is not None or now - self.started >= PROGRESS_EVERY_S
        return now - self.reported_at >= PROGRESS_EVERY_S

    def progress(self) -> WaitProgress:
        self.reported_at = time.monotonic()
        return WaitProgress(
            tx_hash=self.tx_hash,
            confirmations=self.confirmations,
            confirmed=self.confirmed,
            mined_block=self.mined_block,
            head=self.head,
            waited_s=self.reported_at - self.started,
            timeout_s=self.timeout_s,
            mines_on_demand=self.mines_on_demand,
        )

    def timed_out(self) -> str:
        """The problem a TransactionFailed names when the wait gives up."""
        if self.mined_block is None:
            return (
                f"was not mined with {self.confirmations} confirmation(s) within "
                f"{self.timeout_s:g} s; it may still be pending: check it later with "
                "`registry show` before resending"
            )
        missing = self.confirmations - self.confirmed
        problem = (
            f"was mined in block {self.mined_block} but has {self.confirmed} of "
            f"{self.confirmations} confirmations after {self.timeout_s:g} s"
        )
        if self.mines_on_demand:
            problem += (
                "; this node mines a block only when a transaction arrives (automine), so the "
                f"{missing} more block(s) it needs come only with later transactions: mine "
                "blocks, or ask for fewer confirmations (REGISTRY_CONFIRMATIONS)"
            )
        return problem + "; it stays on chain: check it later with `registry show` before resending"


class Transactions:
    """Sign, send and confirm transactions of ``account`` (None: a reader, which cannot)."""

    def __init__(
        self,
        rpc: Rpc,
        account: LocalAccount | None,
        *,
        chain_id: Callable[[], int],
        confirmations: int = 1,
        tx_timeout_s: float = 120.0,
        nonces: NonceCounter | None = None,
    ) -> None:
        self.rpc = rpc
        self.account = account
        self.chain_id = chain_id  # checked by the caller: the client's identity check
        self.confirmations = confirmations
        self.tx_timeout_s = tx_timeout_s
        self.nonces = nonces or NonceCounter()
        # Set by a caller that shows long waits (the CLI); called on the waiting thread.
        self.progress: Callable[[WaitProgress], None] | None = None
        self._signer: Eip1559Signer | None = None
        self._fees: tuple[float, dict[str, int]] | None = None  # (valid until, fee fields)
        rpc.on_disconnect(self.nonces.forget)

    # ------------------------------------------------------------------------------------
    # Fees and nonces
    # ------------------------------------------------------------------------------------

    def fee_fields(self) -> dict[str, int]:
        """EIP-1559 fee fields (``gasPrice`` on a legacy chain), cached for ``FEE_CACHE_S``."""
        now = time.monotonic()
        fees = self._fees
        if fees and now < fees[0]:
            return fees[1]
        base = self.rpc.base_fee()
        if base is None:
            fields = {"gasPrice": self.rpc.gas_price()}
        else:
            fields = {
                "maxFeePerGas": 2 * base + PRIORITY_FEE_WEI,
                "maxPriorityFeePerGas": PRIORITY_FEE_WEI,
            }
        self._fees = (now + FEE_CACHE_S, fields)
        return fields

    def set_fees(self, fields: dict[str, int], *, for_s: float) -> None:
        """Sign with ``fields`` instead of the node's fees for the next ``for_s`` seconds (a
        lower tip orders a transaction after others in its block); a refused send drops them."""
        self._fees = (time.monotonic() + for_s, dict(fields))

    def expire_fees(self) -> None:
        """Ask the node for fees before the next send."""
        self._fees = None

    @contextlib.contextmanager
    def reserve_nonce(self) -> Iterator[int]:
        """Hand out the key's next nonce; it is consumed only if the block exits without error."""
        account = self.account
        if account is None:
            raise ConfigurationError(
                "this operation sends a transaction but no signing key is configured; set "
                "REGISTRY_PRIVATE_KEY or REGISTRY_KEYSTORE (+ REGISTRY_KEYSTORE_PASSWORD)"
            )
        with self.nonces.reserve(lambda: self.rpc.pending_nonce(account.address)) as nonce:
            yield nonce

    def resync_nonce(self) -> None:
        """Ask the node for the key's nonce before the next send (another sender used the key)."""
        self.nonces.forget()

    # ------------------------------------------------------------------------------------
    # Signing and sending
    # ------------------------------------------------------------------------------------

    def sign(self, tx: dict[str, Any], nonce: int) -> bytes:
        """Raw signed bytes of ``tx`` (to, data, gas) at ``nonce`` with current fees."""
        assert self.account is not None  # reserve_nonce() refused already
        fees = self.fee_fields()
        chain_id = self.chain_id()
        if "maxFeePerGas" in fees:
            if self._signer is None:
                self._signer = Eip1559Signer(bytes(self.account.key))
            return self._signer.sign(
                chain_id=chain_id,
                nonce=nonce,
                max_priority_fee_per_gas=fees["maxPriorityFeePerGas"],
                max_fee_per_gas=fees["maxFeePerGas"],
                gas=tx["gas"],
                to=None if tx.get("to") is None else to_bytes(tx["to"]),
                data=to_bytes(tx["data"]),
            ).raw
        legacy = {**tx, **fees, "nonce": nonce, "chainId": chain_id}
        if legacy.get("to") is None:
            legacy.pop("to", None)
        raw: bytes = self.account.sign_transaction(legacy).raw_transaction  # type: ignore[arg-type]
        return raw

    def send(self, tx: dict[str, Any]) -> SentTransaction:
        """Sign ``tx`` (to, data, gas; ``to`` None creates a contract) at the next nonce and
        broadcast it, without waiting for it to be mined."""
        for attempt in (1, 2):
            try:
                with self.reserve_nonce() as nonce:
                    raw = self.sign(tx, nonce)
                    return SentTransaction(self.rpc.send_raw(raw), nonce)
            except ChainError as exc:
                text = str(exc).lower()
                if attempt == 1 and ("nonce" in text or "underpriced" in text or "fee" in text):
                    self._fees = None
                    continue
                raise
        raise AssertionError("unreachable")

    def execute(self, tx: dict[str, Any]) -> dict[str, Any]:
        """Send ``tx`` and return its confirmed receipt; a revert raises the contract's error
        (with ``details["tx_hash"]``)."""
        sent = self.send(tx)
        try:
            receipt = self.wait_for_receipt(sent.tx_hash, nonce=sent.nonce)
        except NonceGap:
            # An earlier transaction of ours vanished (a reorg): this one can never be mined
            # before it. Send it once more at the nonce the chain expects; should the queued
            # copy ever run, the contract refuses it as a duplicate.
            sent = self.send(tx)
            receipt = self.wait_for_receipt(sent.tx_hash, nonce=sent.nonce)
        if int(receipt["status"]) != 1:
            raise self.explain_failure(tx, receipt)
        return receipt

    # ------------------------------------------------------------------------------------
    # Receipts
    # ------------------------------------------------------------------------------------

    def wait_for_receipt(self, tx_hash: str, *, nonce: int | None = None) -> dict[str, Any]:
        """Poll for the receipt, then for the configured confirmations; reorg-safe.

        Given the transaction's ``nonce``, a wait of over a second also asks whether the
        transaction is stuck behind a nonce the chain no longer has, and raises NonceGap if so.
        ``progress``, when set, hears where the wait stands (see ``WaitProgress``).
        """
        started = time.monotonic()
        deadline = started + self.tx_timeout_s
        next_gap_check = started + GAP_CHECK_S
        wait = _Wait(tx_hash, self.confirmations, self.tx_timeout_s, started)
        delay = 0.001
        while True:
            receipt = self.rpc.receipt(tx_hash)
            if receipt is not None and receipt.get("blockNumber") is not None:
                if self.confirmations <= 1:
                    return receipt
                if wait.saw(int(receipt["blockNumber"]), self.rpc.block_number()):
                    return receipt
                if wait.stalled():
                    self._ask_about_mining(wait)
            if nonce is not None and time.monotonic() > next_gap_check:
                next_gap_check = time.monotonic() + GAP_CHECK_S
                self._raise_if_behind_a_gap(tx_hash, nonce)
            if time.monotonic() > deadline:
                # It may be queued behind a nonce the chain never saw (a reorg dropped an earlier
                # transaction of ours): the next write reads the nonce from the node again.
                self.nonces.forget()
                if wait.mined_block is not None:
                    self._ask_about_mining(wait)
                raise TransactionFailed(tx_hash, wait.timed_out())
            if self.progress is not None and wait.due():
                self.progress(wait.progress())
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _ask_about_mining(self, wait: _Wait) -> None:
        """Once per wait: does the node mine only when a transaction arrives? (anvil and
        hardhat answer ``hardhat_getAutomine``; other nodes do not know the method: unknown.)"""
        if wait.asked_node:
            return
        wait.asked_node = True
        if self.rpc.endpoint == MEMORY:
            wait.mines_on_demand = True  # eth-tester mines one block per transaction
            return
        w3 = self.rpc.w3
        try:
            answer = self.rpc.run(
                lambda: w3.provider.make_request("hardhat_getAutomine", [])  # type: ignore[arg-type]
            )
        except ChainError:
            return  # the next receipt poll meets the same trouble and reports it
        result = answer.get("result") if isinstance(answer, dict) else None
        wait.mines_on_demand = result if isinstance(result, bool) else None

    def _raise_if_behind_a_gap(self, tx_hash: str, nonce: int) -> None:
        assert self.account is not None
        executable = self.rpc.pending_nonce(self.account.address)
        if executable < nonce:
            self.nonces.forget()
            raise NonceGap(
                tx_hash,
                f"can never be mined: it has nonce {nonce} but the chain expects {executable} "
                "(an earlier transaction was dropped, e.g. by a reorg)",
            )

    def explain_failure(self, tx: dict[str, Any], receipt: dict[str, Any]) -> ChainError:
        """A mined, reverted transaction: its typed error, from the tracer or a replay."""
        tx_hash = to_hex(receipt["transactionHash"])
        traced = self.rpc.traced_revert(tx_hash)
        if traced is not None:
            error = self.rpc.decoder.decode(traced)
            error.details["tx_hash"] = tx_hash
            return error
        call = {
            "from": self.account.address if self.account else None,
            "to": tx["to"],
            "data": tx["data"],
            "gas": tx["gas"],
        }
        # No tracer (eth-tester, some nodes): replay on the block's final state, where an
        # earlier transaction of the same block has already run, then on its parent's.
        block = int(receipt["blockNumber"])
        for at in (block, block - 1):
            try:
                self.rpc.eth_call(call, at)
            except ContractRevert as exc:
                exc.details["tx_hash"] = tx_hash
                return exc
        return TransactionFailed(tx_hash, "reverted without a recognisable reason (out of gas?)")
