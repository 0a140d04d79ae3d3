"""registry.core.merkle_log against the RFC 6962 reference vectors, and exhaustively for small trees.

The vectors are the ones Certificate Transparency implementations share: the 8 leaf inputs, the
roots of sizes 0..8, the complete-subtree node hashes, and the inclusion and consistency proofs,
copied from transparency-dev/merkle (testonly/constants.go and proof/verify_test.go, which carry
them over from google/certificate-transparency's merkle_tree_test.cc). Then every inclusion and
consistency proof of every tree up to 64 leaves must verify, and fail once a bit, the index or a
size is changed. The provers over stored perfect subtrees (``*_from_nodes``) give the reference
provers' bytes, on the vectors and on random trees of a few thousand leaves, reading ``O(log n)``
nodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.core.merkle_log import (
    EMPTY_ROOT,
    CompactTree,
    NodeReader,
    compact_range,
    consistency_proof,
    consistency_proof_from_nodes,
    inclusion_proof,
    inclusion_proof_from_nodes,
    leaf_hash,
    node_hash,
    perfect_levels,
    root_from_nodes,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from registry.errors import InvalidInput


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# transparency-dev/merkle testonly/constants.go: LeafInputs(), NodeHashes(), RootHashes().
LEAF_INPUTS = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]
NODE_HASHES = [
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]
ROOTS = [
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
# transparency-dev/merkle testonly/constants.go CompactTrees(): the compact range of each size.
COMPACT_NODES = [
    [],
    [NODE_HASHES[0][0]],
    [NODE_HASHES[1][0]],
    [NODE_HASHES[1][0], NODE_HASHES[0][2]],
    [NODE_HASHES[2][0]],
    [NODE_HASHES[2][0], NODE_HASHES[0][4]],
    [NODE_HASHES[2][0], NODE_HASHES[1][2]],
    [NODE_HASHES[2][0], NODE_HASHES[1][2], NODE_HASHES[0][6]],
    [NODE_HASHES[3][0]],
]
# transparency-dev/merkle proof/verify_test.go inclusionProofs: (leaf index, size, audit path);
# the file numbers leaves from 1, these from 0.
INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
# transparency-dev/merkle proof/verify_test.go consistencyProofs: (size1, size2, proof).
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]
# proof/verify_test.go's sha256SomeHash: a well-formed hash that is no node of these trees.
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")

LEAVES = [leaf_hash(entry) for entry in LEAF_INPUTS]


def flipped(node: bytes, bit: int) -> bytes:
    return bytes([node[0] ^ (1 << bit)]) + node[1:]


# --- reference vectors -----------------------------------------------------------------------


def test_the_empty_tree_is_the_hash_of_nothing() -> None:
    assert EMPTY_ROOT == ROOTS[0] == hashlib.sha256(b"").digest()
    assert root_of([]) == EMPTY_ROOT


def test_leaf_and_node_hashes_match_the_reference_nodes() -> None:
    assert NODE_HASHES[0] == LEAVES
    for level in range(1, len(NODE_HASHES)):
        below = NODE_HASHES[level - 1]
        pairs = [node_hash(below[i], below[i + 1]) for i in range(0, len(below), 2)]
        assert pairs == NODE_HASHES[level]


@pytest.mark.parametrize("size", range(9))
def test_roots_of_every_size_match_the_reference_roots(size: int) -> None:
    assert root_of(LEAVES[:size]) == ROOTS[size]


@pytest.mark.parametrize("size", range(9))
def test_the_compact_tree_holds_the_reference_compact_range(size: int) -> None:
    tree = CompactTree()
    tree.extend(LEAVES[:size])
    assert tree.size == size
    assert list(tree.nodes) == COMPACT_NODES[size]
    assert tree.root() == ROOTS[size]
    resumed = CompactTree.restore(size, tree.nodes)
    resumed.extend(LEAVES[size:])
    assert resumed.root() == ROOTS[8]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_proofs_match_the_reference_paths(
    index: int, size: int, path: list[bytes]
) -> None:
    assert inclusion_proof(LEAVES[:size], index) == path
    assert verify_inclusion(LEAVES[index], index, size, path, ROOTS[size])


@pytest.mark.parametrize(("index", "size", "path"), [v for v in INCLUSION if v[2]])
def test_reference_inclusion_proofs_fail_every_corruption_of_the_reference_suite(
    index: int, size: int, path: list[bytes]
) -> None:
    # corruptInclusionProof() of proof/verify_test.go, minus the probes that are malformed here
    # (a leaf or proof element that is not 32 bytes is refused as bad input, tested below).
    leaf, root = LEAVES[index], ROOTS[size]
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (index - 1, size, leaf, root, path),
        (index + 1, size, leaf, root, path),
        (index ^ 2, size, leaf, root, path),
        (index, size * 2, leaf, root, path),
        (index, size // 2, leaf, root, path),
        (index, size, SOME_HASH, root, path),
        (index, size, leaf, EMPTY_ROOT, path),
        (index, size, leaf, SOME_HASH, path),
        (index, size, leaf, root, [*path, root]),
        (index, size, leaf, root, [root, *path]),
        (index, size, leaf, root, path[:-1]),
    ]
    if len(path) > 1:
        probes.append((index, size, leaf, root, [path[0], SOME_HASH, *path[1:]]))
    for i in range(len(path)):
        probes.append((index, size, leaf, root, [*path[:i], flipped(path[i], 3), *path[i + 1 :]]))
    for probe_index, probe_size, probe_leaf, probe_root, probe_path in probes:
        if probe_index < 0:
            continue
        assert not verify_inclusion(probe_leaf, probe_index, probe_size, probe_path, probe_root)


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY)
def test_consistency_proofs_match_the_reference_proofs(
    size1: int, size2: int, proof: list[bytes]
) -> None:
    assert consistency_proof(LEAVES[:size2], size1) == proof
    assert verify_consistency(size1, size2, proof, ROOTS[size1], ROOTS[size2])


@pytest.mark.parametrize(("size1", "size2", "proof"), [v for v in CONSISTENCY if v[2]])
def test_reference_consistency_proofs_fail_every_corruption_of_the_reference_suite(
    size1: int, size2: int, proof: list[bytes]
) -> None:
    # corruptConsistencyProof() of proof/verify_test.go, the malformed probes left out.
    root1, root2 = ROOTS[size1], ROOTS[size2]
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (size1 - 1, size2, root1, root2, proof),
        (size1 + 1, size2, root1, root2, proof),
        (size1 ^ 2, size2, root1, root2, proof),
        (size1, size2 * 2, root1, root2, proof),
        (size1, size2 // 2, root1, root2, proof),
        (size1, size2, SOME_HASH, root2, proof),
        (size1, size2, root1, SOME_HASH, proof),
        (size1, size2, root2, root1, proof),
        (size1, size2, root1, root2, []),
        (size1, size2, root1, root2, [*proof, root1]),
        (size1, size2, root1, root2, [*proof, root2]),
        (size1, size2, root1, root2, [root1, *proof]),
        (size1, size2, root1, root2, [root2, *proof]),
        (size1, size2, root1, root2, [proof[0], *proof]),
        (size1, size2, root1, root2, proof[:-1]),
    ]
    for i in range(len(proof)):
        probes.append(
            (size1, size2, root1, root2, [*proof[:i], flipped(proof[i], 4), *proof[i + 1 :]])
        )
    for probe_size1, probe_size2, probe_root1, probe_root2, probe_proof in probes:
        assert not verify_consistency(
            probe_size1, probe_size2, probe_proof, probe_root1, probe_root2
        )


# TestVerifyConsistency's table, with 32-byte stand-ins for its "don't care" roots.
ROOT_A, ROOT_B = hashlib.sha256(b"don't care 1").digest(), hashlib.sha256(b"don't care 2").digest()


@pytest.mark.parametrize(
    ("size1", "size2", "root1", "root2", "proof", "holds"),
    [
        (0, 0, ROOT_A, ROOT_B, [], False),
        (1, 1, ROOT_A, ROOT_B, [], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [], True),
        (0, 1, EMPTY_ROOT, ROOT_B, [], True),
        (1, 1, ROOT_B, ROOT_B, [], True),
        (1, 0, ROOT_A, ROOT_B, [], False),
        (2, 1, ROOT_A, ROOT_B, [], False),
        (1, 2, ROOT_A, ROOT_B, [], False),
        (0, 0, EMPTY_ROOT, ROOT_B, [], False),
        (1, 1, EMPTY_ROOT, ROOT_B, [], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        # Stricter than the reference suite: an empty tree has one root, SHA-256("").
        (0, 1, ROOT_A, ROOT_B, [], False),
        (0, 0, ROOT_A, ROOT_A, [], False),
    ],
)
def test_trivial_consistency_claims_hold_only_as_the_reference_suite_says(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes], holds: bool
) -> None:
    assert verify_consistency(size1, size2, proof, root1, root2) is holds


def test_a_single_entry_tree_proves_its_leaf_with_an_empty_path() -> None:
    leaf = leaf_hash(b"data")
    assert verify_inclusion(leaf, 0, 1, [], leaf)
    assert not verify_inclusion(leaf, 0, 1, [], SOME_HASH)
    assert not verify_inclusion(SOME_HASH, 0, 1, [], leaf)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (2, 1), (1, 1)])
def test_an_index_outside_the_tree_never_verifies(index: int, size: int) -> None:
    assert not verify_inclusion(SOME_HASH, index, size, [], SOME_HASH)
    assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)


# --- every tree up to 64 leaves --------------------------------------------------------------

MAX = 64
ALL_LEAVES = [leaf_hash(i.to_bytes(2, "big")) for i in range(2 * MAX)]


def _prefix_roots() -> list[bytes]:
    tree, roots = CompactTree(), [EMPTY_ROOT]
    for leaf in ALL_LEAVES:
        tree.append(leaf)
        roots.append(tree.root())
    return roots


PREFIX_ROOTS = _prefix_roots()


def _each_bit_flipped(proof: list[bytes]) -> list[list[bytes]]:
    # Every element, three bit positions each (the lowest, a middle and the highest of byte 0).
    return [
        [*proof[:i], flipped(proof[i], bit), *proof[i + 1 :]]
        for i in range(len(proof))
        for bit in (0, 4, 7)
    ]


def _near(value: int, limit: int) -> set[int]:
    return {
        v
        for v in (value - 1, value + 1, value ^ 1, value ^ 2, value * 2, value // 2)
        if 0 <= v <= limit
    } - {value}


def test_prefix_roots_agree_with_the_recursive_definition() -> None:
    def mth(leaves: list[bytes]) -> bytes:
        if len(leaves) == 0:
            return EMPTY_ROOT
        if len(leaves) == 1:
            return leaves[0]
        k = 1
        while k * 2 < len(leaves):
            k *= 2
        return node_hash(mth(leaves[:k]), mth(leaves[k:]))

    for size in range(2 * MAX + 1):
        assert PREFIX_ROOTS[size] == mth(ALL_LEAVES[:size]) == root_of(ALL_LEAVES[:size])


@pytest.mark.parametrize("size", range(1, MAX + 1))
def test_every_inclusion_proof_verifies_and_fails_once_altered(size: int) -> None:
    leaves, root = ALL_LEAVES[:size], PREFIX_ROOTS[size]
    for index in range(size):
        path = inclusion_proof(leaves, index)
        leaf = leaves[index]
        assert verify_inclusion(leaf, index, size, path, root)
        for broken in _each_bit_flipped(path):
            assert not verify_inclusion(leaf, index, size, broken, root)
        assert not verify_inclusion(flipped(leaf, 0), index, size, path, root)
        assert not verify_inclusion(leaf, index, size, path, flipped(root, 7))
        for other in _near(index, size - 1):
            assert not verify_inclusion(leaf, other, size, path, root)
        # Another size is another tree: its own root does not take this path either.
        for other in _near(size, 2 * MAX) - {0}:
            assert not verify_inclusion(leaf, index, other, path, PREFIX_ROOTS[other])


@pytest.mark.parametrize("size", range(1, MAX + 1))
def test_every_consistency_proof_verifies_and_fails_once_altered(size: int) -> None:
    leaves, root = ALL_LEAVES[:size], PREFIX_ROOTS[size]
    for old in range(size + 1):
        proof = consistency_proof(leaves, old)
        old_root = PREFIX_ROOTS[old]
        assert verify_consistency(old, size, proof, old_root, root)
        for broken in _each_bit_flipped(proof):
            assert not verify_consistency(old, size, broken, old_root, root)
        if old == 0:
            # The empty tree is a prefix of every tree: only its one root can be got wrong.
            assert not verify_consistency(0, size, proof, flipped(old_root, 0), root)
            continue
        if old == size:
            continue
        assert not verify_consistency(old, size, proof, old_root, flipped(root, 7))
        assert not verify_consistency(old, size, proof, flipped(old_root, 0), root)
        for other in _near(old, size):
            assert not verify_consistency(other, size, proof, PREFIX_ROOTS[other], root)
        for other in _near(size, 2 * MAX) - {old}:
            assert not verify_consistency(old, other, proof, old_root, PREFIX_ROOTS[other])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=200), st.data())
def test_an_incremental_root_equals_the_root_of_all_entries(
    entries: list[bytes], data: st.DataObject
) -> None:
    leaves = [leaf_hash(entry) for entry in entries]
    cut = data.draw(st.integers(0, len(leaves)))
    first = CompactTree()
    first.extend(leaves[:cut])
    later = CompactTree.restore(first.size, first.nodes)
    later.extend(leaves[cut:])
    assert later.root() == root_of(leaves)
    assert verify_consistency(
        cut, len(leaves), consistency_proof(leaves, cut), first.root(), later.root()
    )


# --- proofs from stored perfect subtrees -----------------------------------------------------


def reader_of(levels: list[list[bytes]]) -> NodeReader:
    return lambda level, index: levels[level][index]


def test_the_perfect_levels_of_the_reference_leaves_are_the_reference_node_hashes() -> None:
    assert perfect_levels(LEAVES) == NODE_HASHES
    assert perfect_levels([]) == [[]]


def test_push_hands_out_each_perfect_subtree_as_its_block_completes() -> None:
    tree, stored = CompactTree(), [[] for _ in NODE_HASHES]
    for leaf in LEAVES:
        stored[0].append(leaf)
        for level, node in enumerate(tree.push(leaf), start=1):
            stored[level].append(node)
    assert stored == NODE_HASHES
    assert tree.root() == ROOTS[8]


@pytest.mark.parametrize("size", range(9))
def test_roots_and_compact_ranges_from_nodes_match_the_reference(size: int) -> None:
    node = reader_of(NODE_HASHES)
    assert compact_range(node, size) == COMPACT_NODES[size]
    assert root_from_nodes(node, size) == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_proofs_from_nodes_match_the_reference_paths(
    index: int, size: int, path: list[bytes]
) -> None:
    assert inclusion_proof_from_nodes(reader_of(NODE_HASHES), size, index) == (path, ROOTS[size])


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY)
def test_consistency_proofs_from_nodes_match_the_reference_proofs(
    size1: int, size2: int, proof: list[bytes]
) -> None:
    assert consistency_proof_from_nodes(reader_of(NODE_HASHES), size2, size1) == (
        proof,
        ROOTS[size1],
        ROOTS[size2],
    )


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4096), st.data())
def test_proofs_from_stored_nodes_equal_the_reference_byte_for_byte_reading_log_n_nodes(
    size: int, data: st.DataObject
) -> None:
    leaves = (
        ALL_LEAVES[:size]
        if size <= len(ALL_LEAVES)
        else [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    )
    levels = perfect_levels(leaves)
    reads: list[tuple[int, int]] = []

    def node(level: int, index: int) -> bytes:
        assert index < size >> level  # only complete blocks of this tree are ever asked for
        reads.append((level, index))
        return levels[level][index]

    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(0, size), label="old size")

    assert inclusion_proof_from_nodes(node, size, index) == (
        inclusion_proof(leaves, index),
        root_of(leaves),
    )
    # A node per level of the path, plus the compact range the ragged right edge folds from.
    assert len(reads) <= 2 * size.bit_length()
    reads.clear()
    assert consistency_proof_from_nodes(node, size, old) == (
        consistency_proof(leaves, old),
        root_of(leaves[:old]),
        root_of(leaves),
    )
    assert len(reads) <= 3 * size.bit_length()


def test_stored_node_provers_refuse_what_the_reference_refuses_and_a_node_of_the_wrong_size() -> (
    None
):
    node = reader_of(NODE_HASHES)
    with pytest.raises(InvalidInput, match="outside a tree of 3 leaves") as refused:
        inclusion_proof_from_nodes(node, 3, 3)
    assert refused.value.details == {"index": 3, "size": 3}
    with pytest.raises(InvalidInput, match="larger than") as refused:
        consistency_proof_from_nodes(node, 3, 4)
    assert refused.value.details == {"old_size": 4, "size": 3}
    with pytest.raises(InvalidInput) as refused:
        root_from_nodes(lambda level, index: b"torn", 3)
    assert refused.value.details["what"] == "node (1, 0)"


# --- bad input -------------------------------------------------------------------------------

VerifyCall = Callable[[], bool]


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda: verify_inclusion(b"short", 0, 1, [], EMPTY_ROOT), "leaf hash"),
        (lambda: verify_inclusion(EMPTY_ROOT, 0, 1, [], b""), "root"),
        (lambda: verify_inclusion(EMPTY_ROOT, 0, 2, [EMPTY_ROOT.hex()], EMPTY_ROOT), "proof[0]"),
        (
            lambda: verify_inclusion(EMPTY_ROOT, 0, 4, [EMPTY_ROOT, b"x" * 33], EMPTY_ROOT),
            "proof[1]",
        ),
        (lambda: verify_inclusion(EMPTY_ROOT, -1, 1, [], EMPTY_ROOT), "leaf index"),
        (lambda: verify_inclusion(EMPTY_ROOT, 0, True, [], EMPTY_ROOT), "size"),
        (lambda: verify_consistency(1, 2, [b""], EMPTY_ROOT, EMPTY_ROOT), "proof[0]"),
        (lambda: verify_consistency(1, 2, [], b"WrongRoot", EMPTY_ROOT), "old root"),
        (lambda: verify_consistency(1, 2, [], EMPTY_ROOT, b"WrongRoot"), "new root"),
        (lambda: verify_consistency(1.0, 2, [], EMPTY_ROOT, EMPTY_ROOT), "old size"),
        (lambda: verify_consistency(1, -2, [], EMPTY_ROOT, EMPTY_ROOT), "new size"),
    ],
)
def test_a_malformed_proof_or_claim_is_refused_naming_what_is_wrong(
    call: VerifyCall, what: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        call()
    assert refused.value.details["what"] == what
    assert what in refused.value.message


def test_a_proof_that_is_not_a_list_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not a list of hashes"):
        verify_inclusion(EMPTY_ROOT, 0, 1, EMPTY_ROOT, EMPTY_ROOT)  # type: ignore[arg-type]


def test_proving_outside_the_tree_is_refused_with_the_index_and_size() -> None:
    with pytest.raises(InvalidInput, match="outside a tree of 0 leaves") as refused:
        inclusion_proof([], 0)
    assert refused.value.details == {"index": 0, "size": 0}
    with pytest.raises(InvalidInput, match="larger than") as refused:
        consistency_proof(LEAVES[:3], 4)
    assert refused.value.details == {"old_size": 4, "size": 3}


def test_a_compact_tree_refuses_a_bad_leaf_or_a_state_that_does_not_fit_its_size() -> None:
    with pytest.raises(InvalidInput) as refused:
        CompactTree().append(b"entry, not its hash")
    assert refused.value.details["what"] == "leaf hash"
    with pytest.raises(InvalidInput, match="holds 2 nodes, not 1") as refused:
        CompactTree.restore(3, [ROOTS[2]])
    assert refused.value.details == {"size": 3, "nodes": 1}
