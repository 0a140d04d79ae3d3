"""Register one checkpoint digest on a node, then die at a chosen stage: a crashing registrar.

Run as a subprocess by ``test_chain_faults.py``; never imported. The stage is reached by wrapping
this process's own client object (test-only code: the production client has no hooks), so what the
node sees is exactly what a registrar killed at that moment would have left behind.

    python kill_helper.py '<spec as JSON>'

spec: ``url``, ``address``, ``deployment_block``, ``chain_id``, ``key`` (hex private key),
``digest``, ``accuracy_bps``, ``test_set``, ``card`` (hex digests), ``stage`` (one of ``STAGES``),
``polls`` (``polling``: die on that receipt poll), ``node_pgid`` (``node_*``: the anvil process
group to signal).

stdout is one JSON object per line: ``{"reached": stage, ...}`` just before this process SIGKILLs
itself (or signals the node), then ``{"result": ...}`` or ``{"error": code, ...}`` if it lives on.
Exit status: 0 registered, 1 a registry error, -9 (SIGKILL) when killed at the stage.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

from registry.chain.client import RegistryClient
from registry.chain.connection import make_web3
from registry.chain.keys import account_from_hex
from registry.core.digest import Digest
from registry.core.records import RegisterRequest
from registry.devnet.processes import wait_group_exit
from registry.errors import RegistryError

STAGES = (
    "none",  # a clean run: the restart after a crash
    "before_sign",  # a nonce is reserved, nothing signed
    "after_sign",  # signed bytes exist only in this process
    "after_send",  # the node has the transaction; no receipt asked for yet
    "polling",  # asking for the receipt (die on poll number ``polls``)
    "after_receipt",  # the receipt is here; register() has not returned
    "node_sigkill_after_send",  # the node dies without saving; this process carries on
    "node_sigterm_after_send",  # the node mines, saves its state and stops; this one carries on
)


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def die(stage: str, **fields: Any) -> None:
    say(reached=stage, **fields)
    os.kill(os.getpid(), signal.SIGKILL)


def wire_stage(client: RegistryClient, spec: dict[str, Any]) -> None:
    stage = spec["stage"]
    transactions = client.transactions
    real_sign = transactions.sign
    real_wait = transactions.wait_for_receipt
    real_receipt = client.w3.eth.get_transaction_receipt

    def sign(tx: dict[str, Any], nonce: int) -> bytes:
        if stage == "before_sign":
            die(stage, nonce=nonce)
        raw = real_sign(tx, nonce)
        if stage == "after_sign":
            die(stage, nonce=nonce)
        return raw

    def wait_for_receipt(tx_hash: str, **options: Any) -> dict[str, Any]:
        if stage == "after_send":
            die(stage, tx_hash=tx_hash)
        if stage.startswith("node_"):
            sig = signal.SIGKILL if stage == "node_sigkill_after_send" else signal.SIGTERM
            if sig == signal.SIGTERM:
                # anvil (1.7) saves its state on SIGTERM, but one that lands while it is still
                # committing the block writes that block's storage without the block itself:
                # after a restart storage names a block the chain does not have, a node bug no
                # client can repair (the client then fails closed). So the node stops once the
                # block is in, before this process has read the receipt.
                real_receipt_with_retries(tx_hash)
            os.killpg(spec["node_pgid"], sig)
            gone = wait_group_exit(spec["node_pgid"], 10.0)
            say(reached=stage, tx_hash=tx_hash, node_gone=gone)
        receipt = real_wait(tx_hash, **options)
        if stage == "after_receipt":
            die(stage, tx_hash=tx_hash, block_number=int(receipt["blockNumber"]))
        return receipt

    def real_receipt_with_retries(tx_hash: str) -> None:
        for _ in range(200):
            try:
                real_receipt(tx_hash)
                return
            except Exception:
                time.sleep(0.02)
        raise SystemExit(f"{tx_hash} was not mined within 4 s")

    polled = {"calls": 0, "not_found": 0}

    def get_transaction_receipt(tx_hash: Any) -> Any:
        polled["calls"] += 1
        try:
            return real_receipt(tx_hash)
        except Exception:
            polled["not_found"] += 1
            raise
        finally:
            if stage == "polling" and polled["calls"] >= spec.get("polls", 1):
                die(stage, tx_hash=str(tx_hash), **polled)

    transactions.sign = sign  # type: ignore[method-assign]
    transactions.wait_for_receipt = wait_for_receipt  # type: ignore[method-assign]
    client.w3.eth.get_transaction_receipt = get_transaction_receipt  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    if spec["stage"] not in STAGES:
        raise SystemExit(f"unknown stage {spec['stage']!r}; one of {', '.join(STAGES)}")
    client = RegistryClient(
        make_web3(spec["url"], 5.0),
        address=spec["address"],
        deployment_block=spec["deployment_block"],
        expected_chain_id=spec["chain_id"],
        account=account_from_hex(spec["key"], "kill helper key"),
        endpoint=spec["url"],
        tx_timeout_s=30.0,
    )
    wire_stage(client, spec)
    request = RegisterRequest(
        Digest(spec["digest"]),
        spec["accuracy_bps"],
        Digest(spec["test_set"]),
        Digest(spec["card"]),
        None,
    )
    try:
        result = client.register(request)
    except RegistryError as exc:
        say(error=exc.code, message=exc.message)
        return 1
    say(result=result.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
