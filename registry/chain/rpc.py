"""The one place web3 errors are translated into the product's exception tree.

Every request the registry makes to a node goes through ``Rpc.run`` (the small methods below are
the requests it makes), the way httpx maps its transport's errors in one place. A revert arrives in
two shapes: a real node's ``ContractCustomError``/``ContractLogicError`` carrying the revert data,
and eth-tester's ``TransactionFailed`` with the bytes in its message (``reverts.py`` extracts
them); both become the contract's typed errors. A connection failure becomes ``ChainUnavailable``
and tells the listeners (identity, nonce) that whatever they remember of the node may be stale.

eth-tester is not thread-safe, so every client of one in-process chain shares one lock (found by
the provider they share); a real node is, and its calls then run concurrently.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import requests
from web3 import Web3
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ProviderConnectionError,
    TransactionNotFound,
    Web3RPCError,
)

from registry.chain.abi import to_bytes, to_hex
from registry.chain.reverts import RevertDecoder, eth_tester_revert_data
from registry.core.endpoint import MEMORY, redact_endpoint
from registry.errors import ChainError, ChainUnavailable, ContractRevert

T = TypeVar("T")

_TESTER_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_TESTER_LOCKS_GUARD = threading.Lock()


def _lock_for(w3: Web3, endpoint: str) -> contextlib.AbstractContextManager[Any]:
    if endpoint != MEMORY:
        return contextlib.nullcontext()
    with _TESTER_LOCKS_GUARD:
        # Re-entrant: a test mining blocks under serialised() may call the client inside it.
        return _TESTER_LOCKS.setdefault(w3.provider, threading.RLock())


class Rpc:
    """Requests to one node, each translated.

    ``endpoint`` names the node in error messages, as ``redact_endpoint`` shows it: the URL's
    user, password, path and query (where hosted providers keep their keys) stay with ``w3``.
    """

    def __init__(self, w3: Web3, *, endpoint: str, decoder: RevertDecoder) -> None:
        self.decoder = decoder
        self._on_disconnect: list[Callable[[], None]] = []
        self.retarget(w3, endpoint)

    def retarget(self, w3: Web3, endpoint: str) -> None:
        """Send every later request to another node (same contract expected there)."""
        self.w3 = w3
        self.endpoint = redact_endpoint(endpoint)
        self._lock = _lock_for(w3, endpoint)

    def on_disconnect(self, forget: Callable[[], None]) -> None:
        """Call ``forget`` whenever the node cannot be reached: what it cached may be stale."""
        self._on_disconnect.append(forget)

    def serialised(self) -> contextlib.AbstractContextManager[Any]:
        """Hold off every request to this chain from any client: eth-tester needs it to be
        touched by one thread at a time (mining blocks from a test, say); a no-op on a node."""
        return self._lock

    def run(self, fn: Callable[[], T]) -> T:
        """Run one web3 request; its failure is raised as the product's exception."""
        try:
            with self._lock:
                return fn()
        except TransactionNotFound:
            raise  # "not mined yet" is an answer, not a failure: receipt() returns None for it
        except ContractCustomError as exc:
            raise self.decoder.decode(to_bytes(str(exc.data))) from exc
        except ContractLogicError as exc:
            data = exc.data if isinstance(exc.data, str) and exc.data.startswith("0x") else None
            if data and len(data) > 2:
                raise self.decoder.decode(to_bytes(data)) from exc
            raise ContractRevert(f"the contract reverted: {exc.message}") from exc
        except (requests.exceptions.RequestException, ProviderConnectionError, OSError) as exc:
            for forget in self._on_disconnect:
                forget()
            raise ChainUnavailable(self.endpoint, exc.__class__.__name__) from exc
        except Web3RPCError as exc:
            raise ChainError(
                f"the node at {self.endpoint} refused the request: {exc.message}"
            ) from exc
        except Exception as exc:
            if exc.__class__.__name__ == "ValidationError":  # eth-tester refusing a transaction
                raise ChainError(f"the chain refused the request: {exc}") from exc
            revert = eth_tester_revert_data(exc)
            if revert is None:
                raise
            raise self.decoder.decode(revert) from exc

    # ------------------------------------------------------------------------------------
    # The requests the registry makes
    # ------------------------------------------------------------------------------------

    def chain_id(self) -> int:
        return int(self.run(lambda: self.w3.eth.chain_id))

    def block_number(self) -> int:
        return int(self.run(lambda: self.w3.eth.block_number))

    def code(self, address: str) -> bytes:
        return bytes(self.run(lambda: self.w3.eth.get_code(address)))  # type: ignore[arg-type]

    def eth_call(self, tx: Mapping[str, Any], block: int | str = "latest") -> bytes:
        """The raw result of ``eth_call``; a revert is raised as the contract's typed error."""
        return bytes(self.run(lambda: self.w3.eth.call(tx, block)))  # type: ignore[arg-type]

    def eth_calls(self, calls: Sequence[Mapping[str, Any]]) -> list[bytes]:
        """Several ``eth_call``s at the latest block in one round trip (a JSON-RPC batch; one
        after the other on eth-tester). Any failure raises as ``eth_call``'s would."""
        if self.endpoint == MEMORY:
            return [self.eth_call(tx) for tx in calls]
        batch: list[tuple[Any, Any]] = [("eth_call", [dict(tx), "latest"]) for tx in calls]
        responses = self.run(lambda: self.w3.provider.make_batch_request(batch))  # type: ignore[attr-defined]
        if not isinstance(responses, list) or len(responses) != len(calls):
            error = responses.get("error") if isinstance(responses, dict) else responses
            raise ChainError(f"the node at {self.endpoint} refused a batch of calls: {error}")
        results = []
        for response in responses:
            error = response.get("error")
            if error:
                data = error.get("data") if isinstance(error, dict) else None
                if isinstance(data, str) and data.startswith("0x") and len(data) > 2:
                    raise self.decoder.decode(to_bytes(data))
                message = error.get("message") if isinstance(error, dict) else error
                raise ChainError(f"the node at {self.endpoint} refused the request: {message}")
            results.append(to_bytes(response["result"]))
        return results

    def get_logs(self, params: Mapping[str, Any]) -> list[Any]:
        return list(self.run(lambda: self.w3.eth.get_logs(params)))  # type: ignore[arg-type]

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        """The transaction's receipt, or None while it is not mined."""
        try:
            return dict(self.run(lambda: self.w3.eth.get_transaction_receipt(tx_hash)))  # type: ignore[arg-type]
        except TransactionNotFound:
            return None

    def pending_nonce(self, address: str) -> int:
        """The nonce the node expects next from ``address``, counting its pending pool."""
        return int(self.run(lambda: self.w3.eth.get_transaction_count(address, "pending")))  # type: ignore[arg-type]

    def base_fee(self) -> int | None:
        """The latest block's base fee; None on a chain without EIP-1559."""
        base = self.run(lambda: self.w3.eth.get_block("latest")).get("baseFeePerGas")
        return None if base is None else int(base)

    def gas_price(self) -> int:
        return int(self.run(lambda: self.w3.eth.gas_price))

    def send_raw(self, raw: bytes) -> str:
        """Broadcast signed transaction bytes; their hash."""
        sent: bytes = self.run(partial(self.w3.eth.send_raw_transaction, raw))
        return to_hex(sent)

    def traced_revert(self, tx_hash: str) -> bytes | None:
        """The exact revert data of a mined transaction, where the node offers a call tracer."""
        if self.endpoint == MEMORY:
            return None
        try:
            response = self.w3.provider.make_request(
                "debug_traceTransaction",  # type: ignore[arg-type]
                [tx_hash, {"tracer": "callTracer"}],
            )
        except (requests.exceptions.RequestException, Web3RPCError, ValueError, OSError):
            return None  # no tracer, or it failed: the caller replays the transaction instead
        output = (
            (response.get("result") or {}).get("output") if isinstance(response, dict) else None
        )
        return to_bytes(output) if isinstance(output, str) and len(output) > 2 else None
