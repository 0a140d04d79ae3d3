#!/usr/bin/env python3
"""Merkle tree benchmarks, each a ratio against a baseline measured in the same run.

    python scripts/bench_merkle.py [--leaves 10000] [--repeat 5]

1. a batch tree (registry.core.merkle_batch, OpenZeppelin's layout) over ``--leaves`` model leaves
   (the five fields a batch anchors per model: digest, accuracy, test set, card, parent), built
   with every value's proof, against hashing the same leaves alone (the double keccak of each ABI
   encoding, the floor any implementation pays); the bound is 2 s for 10 000 leaves
   (``bench_registry.py`` runs the same measurement through ``bench_batch_tree``);
2. the audit-log tree (registry.core.merkle_log, RFC 6962): the root of ``--leaves`` entries,
   incrementally, and an inclusion and a consistency proof, against SHA-256 of the entries alone;
3. a receipt's proof for logs of 10^3 and 10^6 entries (``--proof-sizes``): its hashes and bytes,
   the node hashes its check costs (``O(log n)``) and the check's time; building it with the
   reference prover hashes the whole tree (``O(n)``) and is timed once;
4. the service's side (registry.core.audit_tree) for logs of 10^3, 10^4 and 10^6 entries
   (``--stored-sizes``): a real log caught up into ``audit.leaves`` and the stored perfect
   subtrees (``audit.level-<k>``), then one inclusion and one consistency proof built from the
   stored nodes (``O(log n)`` reads) against the reference provers over the same leaves
   (``O(n)``, what the tree did before), both checked equal; and the bytes stored per leaf.

Each figure is the best of ``--repeat`` runs (the least disturbed by other work on the machine).
Exit 1 if the batch tree misses its bound.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from registry.core import merkle_log
from registry.core.audit_tree import AuditTree
from registry.core.merkle_batch import MODEL_LEAF_ENCODING, StandardMerkleTree, keccak

BOUND_S = 2.0  # building the batch tree and all its proofs for 10 000 leaves
BOUND_LEAVES = 10_000


def best_of(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def model_leaves(n: int) -> list[tuple[bytes, int, bytes, bytes, bytes]]:
    """``n`` distinct model leaves in ``MODEL_LEAF_ENCODING`` (every third has a parent)."""

    def h(tag: bytes, i: int) -> bytes:
        return hashlib.sha256(tag + i.to_bytes(8, "big")).digest()

    return [
        (h(b"model", i), i % 10_001, h(b"test", i % 7), h(b"card", i), h(b"model", i - 1))
        if i % 3 == 2
        else (h(b"model", i), i % 10_001, h(b"test", i % 7), h(b"card", i), bytes(32))
        for i in range(n)
    ]


def bench_batch_tree(n: int, repeat: int) -> tuple[float, float]:
    """(tree + every proof, the leaf hashes alone) in seconds, best of ``repeat``."""
    leaves = model_leaves(n)

    def hash_leaves_only() -> list[bytes]:
        return [
            keccak(keccak(d + a.to_bytes(32, "big") + test_set + card + parent))
            for d, a, test_set, card, parent in leaves
        ]

    def tree_and_proofs() -> list[list[bytes]]:
        return StandardMerkleTree.of(leaves, MODEL_LEAF_ENCODING).proofs()

    return best_of(repeat, tree_and_proofs), best_of(repeat, hash_leaves_only)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=BOUND_LEAVES, help="leaves (default 10000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (default 5)")
    parser.add_argument(
        "--proof-sizes",
        type=int,
        nargs="*",
        default=[1_000, 1_000_000],
        help="log sizes whose receipt proofs are measured (default 1000 1000000)",
    )
    parser.add_argument(
        "--stored-sizes",
        type=int,
        nargs="*",
        default=[1_000, 10_000, 1_000_000],
        help="log sizes whose stored-node proofs are measured (default 1000 10000 1000000)",
    )
    args = parser.parse_args()
    n = args.leaves

    batch, baseline = bench_batch_tree(n, args.repeat)
    bound = BOUND_S * n / BOUND_LEAVES
    print(f"batch tree, {n} leaves: tree + every proof {batch:.3f} s (bound {bound:.1f} s)")
    print(f"  baseline: the leaf hashes alone {baseline:.3f} s; ratio {batch / baseline:.2f}x")

    entries = [i.to_bytes(8, "big") for i in range(n)]

    def sha256_only() -> list[bytes]:
        return [hashlib.sha256(b"\0" + entry).digest() for entry in entries]

    def log_root_and_proofs() -> None:
        log = merkle_log.CompactTree()
        hashes = [merkle_log.leaf_hash(entry) for entry in entries]
        log.extend(hashes)
        log.root()
        merkle_log.inclusion_proof(hashes, n // 3)
        merkle_log.consistency_proof(hashes, n // 2)

    log_baseline = best_of(args.repeat, sha256_only)
    log_time = best_of(args.repeat, log_root_and_proofs)
    print(
        f"audit-log tree, {n} entries: incremental root + inclusion + consistency proof "
        f"{log_time:.3f} s"
    )
    print(
        f"  baseline: SHA-256 of the entries alone {log_baseline:.3f} s; "
        f"ratio {log_time / log_baseline:.2f}x"
    )
    for size in args.proof_sizes:
        receipt_proof(size, args.repeat)
    for size in args.stored_sizes:
        stored_proofs(size, args.repeat)
    if batch > bound:
        print(f"FAIL: the batch tree took {batch:.3f} s, over its {bound:.1f} s bound")
        return 1
    return 0


def receipt_proof(n: int, repeat: int) -> None:
    """Print what a receipt's inclusion proof in a log of ``n`` entries weighs and costs."""
    hashes = [merkle_log.leaf_hash(i.to_bytes(8, "big")) for i in range(n)]
    index = n // 3
    start = time.perf_counter()
    path = merkle_log.inclusion_proof(hashes, index)
    built = time.perf_counter() - start
    root = merkle_log.root_of(hashes)
    consistency = merkle_log.consistency_proof(hashes, n // 2)
    checked = best_of(
        repeat, lambda: merkle_log.verify_inclusion(hashes[index], index, n, path, root)
    )
    assert merkle_log.verify_inclusion(hashes[index], index, n, path, root)
    print(
        f"receipt proof, log of {n} entries: {len(path)} hashes ({len(path) * 32} bytes, "
        f"{len(path)} node hashes to check it, {checked * 1e6:.0f} us); consistency proof from "
        f"{n // 2}: {len(consistency)} hashes; building the proof (reference) {built:.2f} s"
    )


def stored_proofs(n: int, repeat: int) -> None:
    """Print what an inclusion and a consistency proof cost the service for a log of ``n``
    entries, from the stored nodes against the reference provers, and the bytes kept per leaf."""
    with tempfile.TemporaryDirectory() as directory:
        log = Path(directory) / "audit.log"
        with log.open("wb") as f:  # any lines are leaves; these are as long as a short entry
            for i in range(n):
                f.write(b'{"seq":%d,"event":"predict","hash":"%064x"}\n' % (i, i))
        tree = AuditTree(log)
        start = time.perf_counter()
        tree.catch_up()
        caught_up = time.perf_counter() - start
        index, first = n // 3, n // 2

        # The reference: what the tree did before it kept its nodes (read every leaf, hash).
        def reference_inclusion() -> tuple[list[bytes], bytes]:
            leaves = tree.leaf_hashes(n)
            return merkle_log.inclusion_proof(leaves, index), merkle_log.root_of(leaves)

        def reference_consistency() -> tuple[list[bytes], bytes, bytes]:
            leaves = tree.leaf_hashes(n)
            return (
                merkle_log.consistency_proof(leaves, first),
                merkle_log.root_of(leaves[:first]),
                merkle_log.root_of(leaves),
            )

        inclusion = best_of(repeat, lambda: tree.inclusion(index, n))
        consistency = best_of(repeat, lambda: tree.consistency(first, n))
        slow_repeat = 1 if n >= 100_000 else repeat  # seconds each at a million entries
        slow_inclusion = best_of(slow_repeat, reference_inclusion)
        slow_consistency = best_of(slow_repeat, reference_consistency)
        assert tree.inclusion(index, n) == reference_inclusion()
        assert tree.consistency(first, n) == reference_consistency()
        leaves_bytes = tree.leaves_path.stat().st_size
        levels_bytes = sum(p.stat().st_size for p in Path(directory).glob("audit.level-*"))
    print(
        f"stored-node proofs, log of {n} entries (caught up in {caught_up:.2f} s): inclusion of "
        f"{index} {inclusion * 1e3:.2f} ms against the reference's {slow_inclusion:.3f} s "
        f"(ratio {slow_inclusion / inclusion:.0f}x); consistency from {first} "
        f"{consistency * 1e3:.2f} ms against {slow_consistency:.3f} s "
        f"(ratio {slow_consistency / consistency:.0f}x)"
    )
    print(
        f"  stored per leaf: {(leaves_bytes + levels_bytes) / n:.1f} bytes (leaves file "
        f"{leaves_bytes / n:.1f}, levels {levels_bytes / n:.1f}: "
        f"{(leaves_bytes + levels_bytes) / leaves_bytes:.2f}x the leaves file)"
    )


if __name__ == "__main__":
    sys.exit(main())
