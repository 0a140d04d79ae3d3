#!/usr/bin/env python3
"""Registry benchmarks, each a ratio against a baseline measured in the same run.

    python scripts/bench_registry.py [--hash-mib 1024] [--lookups 500] [--registrations 100]
    python scripts/bench_registry.py --gas-only     # sections 1, 5 and 6

1. gas of a full registration (with parent) vs the 62 000 budget, the EVM floor for one fresh
   storage slot (21 000 + 22 100 + calldata) and EAS ``attest`` (206 914);
2. streaming SHA-256 of a page-cached file vs ``hashlib.sha256`` over the same bytes in memory;
3. ``RegistryClient.lookup`` latency vs a raw ``eth_call`` JSON-RPC round trip to the same node;
4. sequential ``RegistryClient.register`` throughput vs sending pre-signed raw transactions and
   polling their receipts the same way;
5. gas per model of a batch (one ``registerBatch`` of N records) at N = 16, 128 and 1 024, as a
   share of one full registration (goals: at most 1 % at 128, 0.2 % at 1 024), with the revocation
   of one leaf through its proof;
6. gas of the other writes against a direct registration of the same run: an evaluator's
   ``attest`` (goal <= 1.2x) and its withdrawal, a first and a next ``anchorAuditLog``,
   ``grantRole`` (a registrar's grant pays for the slot of its default nonce lane),
   ``registerBySig`` sent by a relayer (goal <= 1.25x from the first request in lane 0 after the
   grant, and once any other lane is in use), and ``cancelNonce``;
7. verifying a batched checkpoint through its manifest (read and parsed once, as a service keeps
   it) vs verifying a single registration, in the same run (target <= 2x), and the tree with every
   proof of a batch of 10 000 five-field leaves (bound 2 s; ``bench_merkle.py``'s measurement).
Everything runs against a fresh anvil on loopback that is stopped at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount

from registry.chain.abi import to_hex
from registry.chain.client import RegistryClient
from registry.chain.connection import make_web3
from registry.chain.delegation import read_domain, sign
from registry.chain.deploy import deploy_contract
from registry.chain.transactions import GAS_LIMITS
from registry.core.batches import build_tree, manifest_bytes
from registry.core.digest import digest_bytes, digest_file
from registry.core.records import RegisterRequest, Role
from registry.core.signed_request import Registration
from registry.devnet import DEV_PRIVATE_KEYS, AnvilNode

EAS_ATTEST_GAS = 206_914
BUDGET_GAS = 62_000


def best_of(runs: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(runs))


def calldata_gas(data: bytes) -> int:
    return sum(16 if b else 4 for b in data)


def request(i: int, tag: bytes, parent: bytes | None = None) -> RegisterRequest:
    return RegisterRequest(
        digest=digest_bytes(tag + i.to_bytes(8, "big")),
        accuracy_bps=9_000 + i % 1000,
        test_set_digest=digest_bytes(b"test" + tag),
        card_digest=digest_bytes(b"card" + tag + i.to_bytes(8, "big")),
        parent=None if parent is None else digest_bytes(parent),
    )


def bench_gas(client: RegistryClient) -> tuple[int, int]:
    """Gas of a registration without and with a parent."""
    parent = request(0, b"gas-parent")
    first = client.register(parent).gas_used or 0
    child = RegisterRequest(
        digest_bytes(b"gas-child"),
        9_912,
        parent.test_set_digest,
        digest_bytes(b"c2"),
        parent.digest,
    )
    used = client.register(child).gas_used or 0
    data = client.abi.encode_call(
        "register",
        child.digest.raw,
        child.accuracy_bps,
        child.test_set_digest.raw,
        child.card_digest.raw,
        child.parent.raw,  # type: ignore[union-attr]
    )
    floor = 21_000 + 22_100 + calldata_gas(data)
    print("1. gas per full registration (with parent)")
    print(f"   used {used:,}   budget {BUDGET_GAS:,} -> {used / BUDGET_GAS:.3f}x of budget")
    print(f"   without a parent {first:,} -> {first / used:.3f}x of one with a parent")
    print(
        f"   EVM floor {floor:,} (21 000 + 22 100 + {calldata_gas(data):,} calldata) -> "
        f"{used / floor:.3f}x of floor"
    )
    print(f"   EAS attest {EAS_ATTEST_GAS:,} -> {used / EAS_ATTEST_GAS:.3f}x of EAS\n")
    return first, used


def bench_batches(client: RegistryClient, single_gas: int) -> None:
    print("5. gas per model of a batch vs one full registration (with parent)")
    goals = {128: 0.01, 1024: 0.002}
    for n in (16, 128, 1024):
        tag = f"batch-{n}".encode()
        tree = build_tree([request(i, tag, parent=tag if i else None) for i in range(n)])
        batch = client.register_batch(tree.root, n, digest_bytes(manifest_bytes(tree)))
        receipt = client.w3.eth.get_transaction_receipt(batch.registration_tx)  # type: ignore[arg-type]
        used = int(receipt["gasUsed"])
        share = used / n / single_gas
        goal = (
            f"   goal <= {goals[n]:.1%}: {'met' if share <= goals[n] else 'MISSED'}"
            if n in goals
            else ""
        )
        print(
            f"   N={n:>5,}: {used:,} gas, {used / n:,.1f} per model -> {share:.3%} of single{goal}"
        )
        if n == 1024:
            revoked = client.transact("revokeLeaf", tree.root, tree.values[7], tree.proof(7), 2)
            print(
                f"   revoking one leaf of N=1 024 (proof of {len(tree.proof(7))} hashes): "
                f"{int(revoked['gasUsed']):,} gas"
            )
    print()


# IModelRegistry.Role.Evaluator; the raw writes below carry their own gas limit, so that this
# section measures the contract whatever limits the client keeps for its typed writes.
EVALUATOR_ROLE = 3
RAW_WRITE_GAS = 300_000


def raw_write(client: RegistryClient, name: str, *args: object) -> int:
    """Gas used by ``name(*args)`` sent from ``client``'s account."""
    data = to_hex(client.abi.encode_call(name, *args))
    receipt = client.transactions.execute(
        {"to": client.address, "data": data, "gas": RAW_WRITE_GAS}
    )
    return int(receipt["gasUsed"])


def sign_registration(
    client: RegistryClient, signer: LocalAccount, r: RegisterRequest, nonce: int, deadline: int
) -> tuple[tuple[bytes, int, bytes, bytes, bytes], bytes]:
    """The record as registerBySig takes it and ``signer``'s EIP-712 signature of it, over the
    contract's own domain (the library's signing, as ``registry sign-registration`` does)."""
    registration = Registration.of(r, signer.address, nonce, deadline)
    return registration.leaf(), sign(signer, read_domain(client), registration)


def bench_other_writes(client: RegistryClient, url: str, single_gas: int, parent_gas: int) -> None:
    """Gas of attestations, audit anchors and signed registrations vs a direct registration."""
    w3 = client.w3

    def other(index: int) -> RegistryClient:
        return RegistryClient(
            w3,
            address=client.address,
            deployment_block=client.deployment_block,
            account=Account.from_key(DEV_PRIVATE_KEYS[index]),
            endpoint=url,
        )

    evaluator, service, relayer = other(1), other(2), other(3)
    evaluator_grant = raw_write(client, "grantRole", EVALUATOR_ROLE, evaluator.account.address)  # type: ignore[union-attr]
    subject = request(0, b"attested")
    client.register(subject)
    rows: list[tuple[str, int, int]] = []
    rows.append(("attest (evaluator, anchored test set)", raw_write(
        evaluator, "attest", subject.digest.raw, 9_650, subject.test_set_digest.raw,
        digest_bytes(b"report").raw,
    ), single_gas))  # fmt: skip
    rows.append(
        (
            "revokeAttestation",
            raw_write(evaluator, "revokeAttestation", subject.digest.raw),
            single_gas,
        )
    )
    rows.append(
        (
            "anchorAuditLog, first",
            raw_write(service, "anchorAuditLog", 1_000, digest_bytes(b"1000").raw),
            single_gas,
        )
    )
    rows.append(
        (
            "anchorAuditLog, next",
            raw_write(service, "anchorAuditLog", 2_000, digest_bytes(b"2000").raw),
            single_gas,
        )
    )

    # A registrar granted here, who never sends a transaction: its grant sets the slot of its
    # default lane (0), so its first signed request there only updates that slot.
    registrar: LocalAccount = Account.from_key(DEV_PRIVATE_KEYS[4])
    rows.append(("grantRole (evaluator)", evaluator_grant, single_gas))
    rows.append(
        (
            "grantRole (registrar)",
            raw_write(client, "grantRole", int(Role.REGISTRAR), registrar.address),
            single_gas,
        )
    )
    deadline = int(w3.eth.get_block("latest")["timestamp"]) + 3_600

    def relayed(r: RegisterRequest, nonce: int) -> int:
        record, signature = sign_registration(client, registrar, r, nonce, deadline)
        return raw_write(
            relayer, "registerBySig", record, registrar.address, nonce, deadline, signature
        )

    parent = request(1, b"relayed")
    rows.append(("registerBySig, first in lane 0 after grant", relayed(parent, 0), single_gas))
    rows.append(("registerBySig, next in its lane", relayed(request(2, b"relayed"), 1), single_gas))
    child = replace(request(3, b"relayed"), parent=parent.digest)
    rows.append(("registerBySig with parent, next in its lane", relayed(child, 2), parent_gas))
    rows.append(
        ("registerBySig, first of lane 1", relayed(request(4, b"relayed"), 1 << 64), single_gas)
    )
    rows.append(
        ("cancelNonce, first of its lane", raw_write(client, "cancelNonce", 9 << 64), single_gas)
    )
    rows.append(
        (
            "cancelNonce, next in its lane",
            raw_write(client, "cancelNonce", (9 << 64) | 1),
            single_gas,
        )
    )

    goals = {"attest (evaluator, anchored test set)": 1.2, "registerBySig, next in its lane": 1.25,
             "registerBySig, first in lane 0 after grant": 1.25,
             "registerBySig with parent, next in its lane": 1.25}  # fmt: skip
    print("6. gas of the other writes vs a direct registration of the same shape")
    print(f"   register {single_gas:,}; register with parent {parent_gas:,}")
    for label, used, base in rows:
        goal = goals.get(label)
        verdict = (
            f"   goal <= {goal}x: {'met' if used <= goal * base else 'MISSED'}" if goal else ""
        )
        print(f"   {label:<44} {used:>7,} -> {used / base:.3f}x{verdict}")
    print()


def bench_hashing(size_mib: int) -> None:
    with tempfile.NamedTemporaryFile(dir=os.environ.get("BENCH_TMP"), delete=False) as f:
        path = Path(f.name)
        block = os.urandom(1 << 20)
        for _ in range(size_mib):
            f.write(block)
    try:
        data = path.read_bytes()  # also leaves the file in the page cache

        def in_memory() -> float:
            t = time.perf_counter()
            hashlib.sha256(data).hexdigest()
            return time.perf_counter() - t

        def streamed() -> float:
            t = time.perf_counter()
            digest_file(path)
            return time.perf_counter() - t

        assert digest_file(path).hex == hashlib.sha256(data).hexdigest()
        base, ours = [], []
        for _ in range(3):  # interleaved so drift hits both alike
            base.append(in_memory())
            ours.append(streamed())
        b, o = min(base), min(ours)
        print(f"2. hashing {size_mib} MiB")
        print(
            f"   hashlib in memory {size_mib / b:8.0f} MiB/s   digest_file (page cache) "
            f"{size_mib / o:8.0f} MiB/s -> {b / o:.3f}x (target >= 0.85x)\n"
        )
    finally:
        path.unlink()


def bench_lookup(client: RegistryClient, url: str, n: int) -> None:
    digest = request(1, b"lookup").digest
    client.register(request(1, b"lookup"))
    fn = client.abi.function("lookup")
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_call",
            "params": [
                {"to": client.address, "data": "0x" + (fn.selector + digest.raw).hex()},
                "latest",
            ],
        }
    )
    session = requests.Session()
    headers = {"Content-Type": "application/json"}

    def raw() -> float:
        t = time.perf_counter()
        for _ in range(n):
            session.post(url, data=body, headers=headers).json()["result"]
        return (time.perf_counter() - t) / n

    def ours() -> float:
        t = time.perf_counter()
        for _ in range(n):
            client.lookup(digest)
        return (time.perf_counter() - t) / n

    def measure() -> tuple[float, float]:
        raw(), ours()  # warm both connections and caches
        b, o = [], []
        for _ in range(3):
            b.append(raw())
            o.append(ours())
        return statistics.median(b), statistics.median(o)

    # While the registration is in the head block the EVM cannot show that block's hash, so
    # every lookup reads the event again; from the next block on the cached event is vouched
    # for by lookup's own answer. The second case is every record but the newest.
    head_b, head_o = measure()
    client.register(request(2, b"lookup: the next block"))
    rb, ro = measure()
    print(f"3. record lookup ({n} calls x 3)")
    print(
        f"   raw eth_call {rb * 1e3:.3f} ms   client.lookup {ro * 1e3:.3f} ms -> "
        f"{ro / rb:.2f}x of raw (target <= 2x)\n"
        f"   the same record while its block is the head: {head_o * 1e3:.3f} ms -> "
        f"{head_o / head_b:.2f}x (its event is read again until the next block)\n"
    )


def bench_register(client: RegistryClient, n: int) -> None:
    w3 = client.w3
    account = client.account
    assert account is not None
    fn = client.abi.function("register")
    transactions = client.transactions

    def presigned(tag: bytes) -> float:
        transactions.resync_nonce()
        nonce = w3.eth.get_transaction_count(account.address, "pending")
        fees = transactions.fee_fields()
        raws = []
        for i in range(n):
            r = request(i, tag)
            data = fn.encode(
                r.digest.raw, r.accuracy_bps, r.test_set_digest.raw, r.card_digest.raw, bytes(32)
            )
            tx = {
                "to": client.address,
                "data": data,
                "gas": GAS_LIMITS["register"],
                "nonce": nonce + i,
                "chainId": w3.eth.chain_id,
                **fees,
            }
            raws.append(account.sign_transaction(tx).raw_transaction)
        t = time.perf_counter()
        for raw_tx in raws:
            tx_hash = w3.eth.send_raw_transaction(raw_tx)
            transactions.wait_for_receipt(tx_hash.to_0x_hex())  # same polling as the client
        return n / (time.perf_counter() - t)

    def ours(tag: bytes) -> float:
        transactions.resync_nonce()
        t = time.perf_counter()
        for i in range(n):
            client.register(request(i, tag))
        return n / (time.perf_counter() - t)

    base, mine = [], []
    for round_ in range(2):
        base.append(presigned(b"raw%d" % round_))
        mine.append(ours(b"ours%d" % round_))
    b, o = max(base), max(mine)
    print(f"4. sequential registrations ({n} x 2 rounds)")
    print(
        f"   pre-signed raw sends {b:7.1f} tx/s   client.register {o:7.1f} tx/s -> "
        f"{o / b:.2f}x (target >= 0.8x)\n"
    )


def bench_batch_verify(client: RegistryClient, n: int) -> None:
    """``verify_in_manifest`` (the manifest read and parsed once, as the service keeps it) against
    ``verify_digest`` of a single registration, each the median of three rounds of ``n`` calls."""
    from registry.core.batches import Manifest
    from registry.verify import verify_digest, verify_in_manifest

    single = request(0, b"verify-single")
    client.register(single)
    tree = build_tree([request(i, b"verify-batch") for i in range(128)])
    raw = manifest_bytes(tree)
    client.register_batch(tree.root, len(tree), digest_bytes(raw))
    client.register(request(1, b"verify: the next block"))  # neither is in the head block
    parse_s = best_of(3, lambda: _timed(lambda: Manifest.parse(raw)))
    manifest = Manifest.parse(raw)
    batched = request(77, b"verify-batch").digest

    def round_of(verify: Callable[[], object]) -> float:
        t = time.perf_counter()
        for _ in range(n):
            verify()
        return (time.perf_counter() - t) / n

    def one() -> object:
        return verify_digest(client, single.digest)

    def through_batch() -> object:
        return verify_in_manifest(client, batched, manifest)

    assert verify_in_manifest(client, batched, manifest)[0].verified
    round_of(one), round_of(through_batch)  # warm both paths' caches
    s, b = [], []
    for _ in range(3):
        s.append(round_of(one))
        b.append(round_of(through_batch))
    single_s, batch_s = statistics.median(s), statistics.median(b)
    print(f"7. verifying a batched checkpoint ({n} calls x 3, a batch of 128)")
    print(
        f"   single record {single_s * 1e3:.3f} ms   through its batch's manifest "
        f"{batch_s * 1e3:.3f} ms -> {batch_s / single_s:.2f}x (target <= 2x)\n"
        f"   reading the 128-leaf manifest once (every hash checked) {parse_s * 1e3:.1f} ms"
    )


def bench_batch_tree_build(leaves: int) -> None:
    """The tree and every proof of a batch, as ``bench_merkle.py`` measures it."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_merkle import BOUND_LEAVES, BOUND_S, bench_batch_tree

    tree_s, hashes_s = bench_batch_tree(leaves, 3)
    bound = BOUND_S * leaves / BOUND_LEAVES
    print(
        f"   a batch of {leaves:,} five-field leaves: tree + every proof {tree_s:.3f} s "
        f"(bound {bound:.1f} s: {'met' if tree_s <= bound else 'MISSED'}); the leaf hashes "
        f"alone {hashes_s:.3f} s -> {tree_s / hashes_s:.2f}x\n"
    )


def _timed(work: Callable[[], object]) -> float:
    t = time.perf_counter()
    work()
    return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hash-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--lookups", type=int, default=500, help="calls per round (default 500)")
    parser.add_argument("--registrations", type=int, default=100, help="per round (default 100)")
    parser.add_argument(
        "--verifications", type=int, default=200, help="batched verifications per round (200)"
    )
    parser.add_argument("--batch-leaves", type=int, default=10_000, help="leaves (default 10000)")
    parser.add_argument(
        "--gas-only", action="store_true", help="only the gas sections 1, 5 and 6 (default: all)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir, AnvilNode(Path(data_dir)) as node:
        w3 = make_web3(node.url, 10.0)
        account = Account.from_key(DEV_PRIVATE_KEYS[0])
        client, _ = deploy_contract(w3, account, endpoint=node.url)
        client.grant_role(Role.REGISTRAR, account.address)
        print(f"anvil at {node.url}, registry at {client.address}\n")
        single_gas, parent_gas = bench_gas(client)
        bench_batches(client, parent_gas)
        bench_other_writes(client, node.url, single_gas, parent_gas)
        if args.gas_only:
            return 0
        bench_lookup(client, node.url, args.lookups)
        bench_register(client, args.registrations)
        bench_batch_verify(client, args.verifications)
    bench_batch_tree_build(args.batch_leaves)
    bench_hashing(args.hash_mib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
