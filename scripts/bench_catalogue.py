#!/usr/bin/env python3
"""The catalogue's cost against the registry's size, and the event index's catch-up rate.

    python scripts/bench_catalogue.py [--small 100] [--large 20000] [--requests 50]

1. ``GET /models?limit=100`` p50 with ``--small`` registered models, then with ``--large``
   (target: at most 1.5x; before the index a list cost one round trip per record);
2. a fresh index catching up from a node that already holds ``--large`` registrations, in
   events per second (target: at least 5 000/s).
The node is a fresh anvil on loopback, filled with pre-signed raw registrations sent in JSON-RPC
batches between manual ``evm_mine`` calls (hundreds per block), and stopped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
from eth_account import Account
from fastapi.testclient import TestClient

from registry.api import create_app
from registry.chain.connection import make_web3
from registry.chain.deploy import deploy_and_grant_self
from registry.chain.keys import account_from_hex
from registry.config import Settings
from registry.core.digest import digest_bytes
from registry.devnet import DEV_PRIVATE_KEYS, AnvilNode
from registry.index import ChainIndex

PER_BLOCK = 400  # registrations mined together (about 25 M gas: under anvil's 30 M limit)


def fill(url: str, client: object, key: str, start: int, stop: int) -> None:
    """Register models ``start`` to ``stop - 1`` with pre-signed transactions."""
    account = Account.from_key(key)
    encode = client.abi.encode_call  # type: ignore[attr-defined]
    address = client.address  # type: ignore[attr-defined]
    chain_id = requests.post(url, json=rpc("eth_chainId", []), timeout=30).json()["result"]
    nonce = int(
        requests.post(
            url, json=rpc("eth_getTransactionCount", [account.address, "pending"]), timeout=30
        ).json()["result"],
        16,
    )
    requests.post(url, json=rpc("evm_setAutomine", [False]), timeout=30)
    for first in range(start, stop, PER_BLOCK):
        batch = []
        for i in range(first, min(first + PER_BLOCK, stop)):
            data = encode(
                "register",
                digest_bytes(b"bench model %d" % i).raw,
                9_000 + i % 1_000,
                digest_bytes(b"bench test set").raw,
                digest_bytes(b"bench card %d" % i).raw,
                bytes(32),
            )
            tx = {
                "to": address,
                "data": data,
                "gas": 150_000,
                "maxFeePerGas": 10**10,
                "maxPriorityFeePerGas": 1,
                "nonce": nonce,
                "chainId": int(chain_id, 16),
                "type": 2,
            }
            nonce += 1
            raw = account.sign_transaction(tx).raw_transaction
            batch.append(rpc("eth_sendRawTransaction", ["0x" + raw.hex()], len(batch)))
        answers = requests.post(url, json=batch, timeout=120).json()
        errors = [a["error"] for a in answers if "error" in a]
        if errors:
            raise SystemExit(f"the node refused a registration: {errors[0]}")
        requests.post(url, json=rpc("evm_mine", []), timeout=120)
    requests.post(url, json=rpc("evm_setAutomine", [True]), timeout=30)


def rpc(method: str, params: list[object], ident: int = 1) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": ident, "method": method, "params": params}


def p50_list(http: TestClient, requests_n: int) -> tuple[float, int]:
    """Median seconds of ``GET /models?limit=100`` (index caught up first) and the page size."""
    first = http.get("/models", params={"limit": 100})
    assert first.status_code == 200, first.text
    times = []
    for _ in range(requests_n):
        t0 = time.perf_counter()
        response = http.get("/models", params={"limit": 100})
        times.append(time.perf_counter() - t0)
        assert response.status_code == 200
    return statistics.median(times), len(first.json()["models"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=100, help="models first (default 100)")
    parser.add_argument("--large", type=int, default=20_000, help="models then (default 20000)")
    parser.add_argument("--requests", type=int, default=50, help="lists timed (default 50)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        node = AnvilNode(Path(tmp) / "node", state_interval=None).start()
        try:
            w3 = make_web3(node.url, 30.0)
            account = account_from_hex(DEV_PRIVATE_KEYS[0], "anvil dev key 0")
            client, _ = deploy_and_grant_self(w3, account, endpoint=node.url)
            settings = Settings(
                rpc_url=node.url,
                data_dir=Path(tmp) / "service",
                contract_address=client.address,
                allowed_hosts=["testserver"],
            )
            fill(node.url, client, DEV_PRIVATE_KEYS[0], 0, args.small)
            with TestClient(create_app(settings, client=client)) as http:
                small, size = p50_list(http, args.requests)
                print(f"{args.small:>6} models: GET /models?limit=100 p50 {small * 1e3:7.2f} ms")
                t0 = time.perf_counter()
                fill(node.url, client, DEV_PRIVATE_KEYS[0], args.small, args.large)
                filled = time.perf_counter() - t0
                print(f"        (filled {args.large - args.small} more in {filled:.1f} s)")
                large, size = p50_list(http, args.requests)
                print(
                    f"{args.large:>6} models: GET /models?limit=100 p50 {large * 1e3:7.2f} ms "
                    f"({size} per page) -> {large / small:.2f}x (target <= 1.5x)"
                )

            index = ChainIndex(Path(tmp) / "fresh" / "index.sqlite3", lambda: client)
            t0 = time.perf_counter()
            index.catch_up(budget_s=600)
            took = time.perf_counter() - t0
            print(
                f"fresh index catch-up: {args.large} events in {took:.2f} s -> "
                f"{args.large / took:,.0f} events/s (target >= 5,000/s)"
            )
        finally:
            node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
