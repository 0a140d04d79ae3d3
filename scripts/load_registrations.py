#!/usr/bin/env python3
"""Many registrations at once against a fresh anvil: no nonce errors, no record lost, how fast.

    python scripts/load_registrations.py [--count 50] [--threads 8] [--keys 1]
                                         [--block-time S] [--timeout 120] [--json]

Starts an ephemeral anvil on a free loopback port (stopped at the end), deploys the registry with
dev key 0 and makes dev keys 0..keys-1 registrars. ``--count`` distinct checkpoint digests are then
registered from ``--threads`` threads: with one key every thread shares one client (one nonce
counter, the way the clinic service registers); with several keys each key has its own client and
the registrations are dealt out in turn. Afterwards it checks

* nonces: no registration failed, each key's registrations used consecutive nonces, every
  transaction the key sent is mined and none waits in the pool;
* records: ``list_models`` returns exactly the digests sent and each ``lookup`` returns the
  accuracy, test-set digest, card digest and registrant that were sent;

and prints the registration phase's elapsed time and transactions per second. Exit status: 0 all
checks passed, 1 a check failed or the run did not finish within ``--timeout``, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import asdict, dataclass, field
from typing import Any

from registry.chain.client import RegistryClient
from registry.chain.connection import make_web3
from registry.chain.deploy import deploy_contract
from registry.chain.keys import account_from_hex
from registry.core.digest import Digest
from registry.core.records import RegisterRequest, RegistrationResult, Role
from registry.devnet import DEV_PRIVATE_KEYS, AnvilNode
from registry.errors import RegistryError

MAX_COUNT = 2_000  # a load test, not a soak test: keeps a mistyped --count from running for hours
MAX_THREADS = 64
TEST_SET = Digest(hashlib.sha256(b"load test split").hexdigest())


@dataclass
class LoadReport:
    count: int
    threads: int
    keys: int
    mining: str
    elapsed_s: float = 0.0
    tx_per_s: float = 0.0
    registered: int = 0
    nonce_errors: int = 0
    listed: int = 0
    looked_up: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def lines(self) -> list[str]:
        return [
            f"load: {self.count} registrations from {self.threads} threads with {self.keys} "
            f"key(s), {self.mining}",
            f"elapsed {self.elapsed_s:.2f} s, {self.tx_per_s:.1f} tx/s "
            f"({self.registered} registered)",
            f"nonce errors: {self.nonce_errors}",
            f"records: {self.listed}/{self.count} listed, {self.looked_up}/{self.count} looked up "
            "with the fields sent",
            *(f"FAILED: {failure}" for failure in self.failures[:20]),
            *([f"... and {len(self.failures) - 20} more"] if len(self.failures) > 20 else []),
            "OK" if self.ok else f"{len(self.failures)} failure(s)",
        ]


def request(i: int) -> RegisterRequest:
    tag = i.to_bytes(4, "big")
    return RegisterRequest(
        digest=Digest(hashlib.sha256(b"load checkpoint " + tag).hexdigest()),
        accuracy_bps=9_000 + i % 1_000,
        test_set_digest=TEST_SET,
        card_digest=Digest(hashlib.sha256(b"load card " + tag).hexdigest()),
        parent=None,
    )


def _is_nonce_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "nonce" in text or "replacement transaction" in text or "already known" in text


def run_load(
    *,
    count: int = 50,
    threads: int = 8,
    keys: int = 1,
    block_time: float | None = None,
    timeout_s: float = 120.0,
) -> LoadReport:
    """Register ``count`` digests from ``threads`` threads on a fresh anvil; check and time it."""
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be 1..{MAX_COUNT}, got {count}")
    if not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be 1..{MAX_THREADS}, got {threads}")
    if not 1 <= keys <= len(DEV_PRIVATE_KEYS):
        raise ValueError(f"keys must be 1..{len(DEV_PRIVATE_KEYS)}, got {keys}")
    mining = "automine" if block_time is None else f"a block every {block_time:g} s"
    report = LoadReport(count, threads, keys, mining)
    deadline = time.monotonic() + timeout_s
    with AnvilNode(block_time=block_time) as node:
        w3 = make_web3(node.url, 10.0)
        accounts = [account_from_hex(k, f"dev key {i}") for i, k in enumerate(DEV_PRIVATE_KEYS)]
        admin, deployment = deploy_contract(
            w3, accounts[0], endpoint=node.url, tx_timeout_s=timeout_s
        )
        for account in accounts[:keys]:
            admin.grant_role(Role.REGISTRAR, account.address)
        clients = [admin] + [
            RegistryClient(
                make_web3(node.url, 10.0),
                address=deployment.address,
                deployment_block=deployment.block_number,
                expected_chain_id=deployment.chain_id,
                account=account,
                endpoint=node.url,
                tx_timeout_s=timeout_s,
            )
            for account in accounts[1:keys]
        ]
        nonce_before = {
            c.account.address: w3.eth.get_transaction_count(c.account.address)  # type: ignore[union-attr]
            for c in clients
        }
        requests = [request(i) for i in range(count)]
        results: dict[int, RegistrationResult] = {}

        def register(i: int) -> None:
            results[i] = clients[i % keys].register(requests[i])

        started = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=threads)
        futures = [pool.submit(register, i) for i in range(count)]
        timed_out = False
        try:
            for i, future in enumerate(futures):
                try:
                    future.result(timeout=max(0.0, deadline - time.monotonic()))
                except FuturesTimeout:
                    report.failures.append(f"not finished within {timeout_s:g} s")
                    timed_out = True
                    break
                except RegistryError as exc:
                    report.nonce_errors += _is_nonce_error(exc)
                    report.failures.append(f"{requests[i].digest.short}: {exc.code}: {exc}")
        finally:
            # Past the deadline, threads still sending end once the node below is stopped.
            pool.shutdown(wait=not timed_out, cancel_futures=True)
        report.elapsed_s = time.monotonic() - started
        report.registered = sum(not r.already_registered for r in results.values())
        report.tx_per_s = report.registered / report.elapsed_s if report.elapsed_s else 0.0
        if not timed_out:
            _check_nonces(report, clients, nonce_before, results, keys)
            _check_records(report, admin, requests, clients, keys)
    return report


def _check_nonces(
    report: LoadReport,
    clients: list[RegistryClient],
    nonce_before: dict[str, int],
    results: dict[int, RegistrationResult],
    keys: int,
) -> None:
    w3 = clients[0].w3
    for k, client in enumerate(clients):
        address = client.account.address  # type: ignore[union-attr]
        used = sorted(
            int(w3.eth.get_transaction(r.tx_hash)["nonce"])  # type: ignore[arg-type]
            for i, r in results.items()
            if i % keys == k and r.tx_hash is not None
        )
        start = nonce_before[address]
        if used != list(range(start, start + len(used))):
            report.nonce_errors += 1
            report.failures.append(f"key {k} ({address}): nonces not consecutive: {used}")
        latest = w3.eth.get_transaction_count(address, "latest")
        pending = w3.eth.get_transaction_count(address, "pending")
        if latest != start + len(used) or pending != latest:
            report.nonce_errors += 1
            report.failures.append(
                f"key {k} ({address}): nonce {latest} (pending {pending}) after {len(used)} "
                f"registrations from nonce {start}: a gap or a transaction stuck in the pool"
            )


def _check_records(
    report: LoadReport,
    reader: RegistryClient,
    requests: list[RegisterRequest],
    clients: list[RegistryClient],
    keys: int,
) -> None:
    listed = {record.digest for record in reader.list_models()}
    sent = {r.digest for r in requests}
    report.listed = len(listed & sent)
    if listed != sent:
        report.failures.append(
            f"list_models: {len(sent - listed)} sent but missing, {len(listed - sent)} unexpected"
        )
    for i, sent_request in enumerate(requests):
        record, _ = reader.lookup(sent_request.digest)
        expected = (
            clients[i % keys].account.address,  # type: ignore[union-attr]
            sent_request.accuracy_bps,
            sent_request.test_set_digest,
            sent_request.card_digest,
        )
        if record is None:
            report.failures.append(f"lookup {sent_request.digest.short}: not registered")
        elif (
            record.registrant,
            record.accuracy_bps,
            record.test_set_digest,
            record.card_digest,
        ) != expected:
            report.failures.append(f"lookup {sent_request.digest.short}: fields differ: {record}")
        else:
            report.looked_up += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Concurrent registrations against a fresh local anvil: nonces, records, tx/s."
    )
    parser.add_argument("--count", type=int, default=50, help="registrations (default: 50)")
    parser.add_argument("--threads", type=int, default=8, help="sending threads (default: 8)")
    parser.add_argument(
        "--keys", type=int, default=1, help="signing keys, one client each (default: 1)"
    )
    parser.add_argument(
        "--block-time",
        type=float,
        default=None,
        help="seconds between blocks (default: automine, a block per transaction)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="limit for the whole run (default: 120 s)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = run_load(
            count=args.count,
            threads=args.threads,
            keys=args.keys,
            block_time=args.block_time,
            timeout_s=args.timeout,
        )
    except ValueError as exc:
        parser.error(str(exc))
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
