#!/usr/bin/env python3
"""Proof bundles against a registry of many records: size, offline check time, online lookup.

    python scripts/bench_bundle.py [--records 10000] [--runs 200]

A fresh anvil on loopback is filled with ``--records`` real registrations (pre-signed raw
transactions in JSON-RPC batches, 400 per block: bench_catalogue.py's ``fill``), so the storage
trie has the shape a registry of that size has. Then, for one record in it, in one run:

1. the bundle's size (target: at most 4 KiB), and its proof bytes once, without JSON and hex;
2. the offline check, parse included (``ProofBundle.parse`` + ``verify_bundle``), median of
   ``--runs`` (target: at most 10 ms);
3. the same record looked up online: ``client.lookup`` (one ``eth_call``) and ``verify_digest``
   (what ``registry verify`` asks), medians, and the ratio offline / online (target: <= 1.5).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_catalogue import fill

from registry.chain.connection import make_web3
from registry.chain.deploy import deploy_and_grant_self
from registry.chain.keys import account_from_hex
from registry.chain.proofs import make_bundle
from registry.core.bundles import ProofBundle
from registry.core.digest import digest_bytes
from registry.devnet import DEV_PRIVATE_KEYS, AnvilNode
from registry.offline import Trust, verify_bundle
from registry.verify import verify_digest


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm: caches, imports
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000, help="default 10000")
    parser.add_argument("--runs", type=int, default=200, help="timed checks (default 200)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        node = AnvilNode(Path(tmp) / "node", state_interval=None).start()
        try:
            key = DEV_PRIVATE_KEYS[0]
            client, _ = deploy_and_grant_self(
                make_web3(node.url, 30.0), account_from_hex(key, "dev key 0"), endpoint=node.url
            )
            t0 = time.perf_counter()
            fill(node.url, client, key, 0, args.records)
            print(
                f"registered {args.records} records with real transactions in "
                f"{time.perf_counter() - t0:.1f} s"
            )
            digest = digest_bytes(b"bench model %d" % (args.records // 2))
            checked = make_bundle(client, digest)
            assert checked.record is not None, "the record is not in the bundle's block"
            raw = checked.bundle.to_json()
            bundle = checked.bundle
            nodes = {*bundle.account_proof, *(n for s in bundle.storage for n in s.nodes)}
            proof_bytes = len(bundle.header) + sum(len(n) for n in nodes)
            trust = Trust(checked.block_hash, client.address, client.chain_id)
            code = client.artifact.deployed_bytecode

            def offline() -> object:
                return verify_bundle(ProofBundle.parse(raw), digest, trust, code).verdict

            assert offline().verified  # type: ignore[attr-defined]
            offline_ms = median_ms(offline, args.runs)
            lookup_ms = median_ms(lambda: client.lookup(digest), args.runs)
            verify_ms = median_ms(lambda: verify_digest(client, digest), args.runs)
        finally:
            node.stop()

    depth = [len(s.nodes) for s in bundle.storage]
    print(
        f"bundle: {len(raw)} bytes of JSON ({len(raw) / 4096:.2f} x the 4 KiB target); "
        f"header and distinct proof nodes {proof_bytes} bytes ({proof_bytes / 4096:.2f} x); "
        f"storage proof depths {depth}, account proof depth {len(bundle.account_proof)}"
    )
    print(f"offline check (parse + verify): {offline_ms:.2f} ms ({offline_ms / 10:.2f} x 10 ms)")
    print(
        f"online: lookup {lookup_ms:.2f} ms, verify_digest {verify_ms:.2f} ms; offline / lookup "
        f"= {offline_ms / lookup_ms:.2f}, offline / verify_digest = {offline_ms / verify_ms:.2f} "
        "(target <= 1.5)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
