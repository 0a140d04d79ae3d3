"""Fail closed on the wrong chain or the wrong contract: the check every read and write starts with.

A client answers nothing until the node reports the expected chain id and the address holds this
build's runtime code. Asking costs two round trips, so a passed check is trusted for ``ttl_s``;
it is forgotten at once when the node cannot be reached or a call finds the code gone, and
``lookup`` re-checks the chain id on every answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from registry.chain.rpc import Rpc
from registry.errors import ContractMismatch, WrongChain


@dataclass(frozen=True)
class ChainIdentity:
    chain_id: int
    address: str
    head: int


class IdentityCheck:
    """Chain id and runtime code as expected, re-checked at most every ``ttl_s``."""

    def __init__(
        self,
        rpc: Rpc,
        *,
        address: str,
        runtime_code: bytes,
        expected_chain_id: int | None,
        ttl_s: float,
    ) -> None:
        self.rpc = rpc
        self.address = address
        self.runtime_code = runtime_code
        self.expected_chain_id = expected_chain_id
        self.ttl_s = ttl_s
        self._passed: tuple[float, ChainIdentity] | None = None
        rpc.on_disconnect(self.forget)

    @property
    def last(self) -> ChainIdentity | None:
        """What the last passed check found, without asking the node; None once forgotten."""
        passed = self._passed
        return passed[1] if passed else None

    def forget(self) -> None:
        """Check again before the next answer (the node went away, or a call found no code)."""
        self._passed = None

    def check(self, *, force: bool = False) -> ChainIdentity:
        now = time.monotonic()
        passed = self._passed
        if not force and passed and now - passed[0] < self.ttl_s:
            return passed[1]
        chain_id = self.rpc.chain_id()
        if self.expected_chain_id is not None and chain_id != self.expected_chain_id:
            raise WrongChain(self.expected_chain_id, chain_id, self.rpc.endpoint)
        code = self.rpc.code(self.address)
        if not code:
            raise ContractMismatch(self.address, f"holds no contract code on chain {chain_id}")
        if code != self.runtime_code:
            raise ContractMismatch(
                self.address, f"holds code that is not this ModelRegistry build on chain {chain_id}"
            )
        identity = ChainIdentity(chain_id, self.address, self.rpc.block_number())
        self._passed = (now, identity)
        return identity
