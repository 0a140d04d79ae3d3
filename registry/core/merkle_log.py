"""The RFC 6962 / RFC 9162 Merkle tree: what anchors the audit log, checkable with CT tooling.

The audit log is hash-chained line by line; anchoring it means publishing, from time to time, the
root of a Merkle tree over its entries. Two proofs then answer an auditor without the whole log:
an *inclusion* proof (this entry is entry ``m`` of the log whose root was anchored at size ``n``)
and a *consistency* proof (the log anchored at size ``n`` is the log anchored earlier at size
``m``, only extended: nothing was edited, removed or reordered). Certificate Transparency built
these on RFC 6962 and RFC 9162, so this module follows them to the byte, and its test checks the
published reference vectors of the CT implementations:

- SHA-256; a leaf is ``SHA-256(0x00 || entry)``, a node ``SHA-256(0x01 || left || right)`` (the
  prefixes keep a leaf from ever passing for a node);
- ``MTH`` of ``n`` leaves splits at ``k``, the largest power of two below ``n``, so any ``n``
  works, not only powers of two, and the tree of an empty log is ``SHA-256("")``;
- proofs are built as RFC 6962 section 2.1 defines ``PATH`` and ``PROOF``, and checked with the
  algorithms of RFC 9162 sections 2.1.3.2 and 2.1.4.2.

``CompactTree`` computes the root of a growing log incrementally, holding one hash per set bit of
its size (a stack of perfect-subtree roots), so a log of millions of entries is rooted without
holding its entries. The provers take the leaf hashes (``leaf_hash`` of each entry) and cost
``O(n)`` hashing each: they are the reference. The ``*_from_nodes`` provers build the same bytes
from stored *perfect subtrees* (the root of every complete, aligned block of ``2^k`` leaves, which
``CompactTree.push`` hands out as the log grows): every node of a proof for size ``n`` is either
one such subtree or the root of the tree's ragged right edge, folded from the ``O(log n)``
subtrees of ``n``'s compact range, so a proof reads ``O(log n)`` stored hashes.

A verifier answers ``False`` for a well-formed proof that does not hold (another root, another
index or size, a changed bit) and raises ``InvalidInput`` for a malformed one (a hash that is not
32 bytes, a negative size). One choice is stricter than the RFC: the only root of an empty tree
is ``SHA-256("")``, so a consistency claim from size 0 must carry that root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypeAlias

from registry.errors import InvalidInput

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactTree",
    "NodeReader",
    "compact_range",
    "consistency_proof",
    "consistency_proof_from_nodes",
    "inclusion_proof",
    "inclusion_proof_from_nodes",
    "leaf_hash",
    "node_hash",
    "perfect_levels",
    "root_from_nodes",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``: the hash of one log entry as a leaf."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: an internal node, order as given (not sorted)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _hash(value: object, what: str) -> bytes:
    if isinstance(value, bytes | bytearray) and len(value) == HASH_SIZE:
        return bytes(value)
    shown = repr(value) if len(repr(value)) <= 100 else repr(value)[:97] + "..."
    raise InvalidInput(
        f"{what} {shown} is not a {HASH_SIZE}-byte SHA-256 hash; give the raw 32 bytes",
        value=shown,
        what=what,
    )


def _count(value: object, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise InvalidInput(
        f"{what} {value!r} is not a whole number of entries (0 or more)",
        value=repr(value)[:100],
        what=what,
    )


def _proof(proof: object) -> list[bytes]:
    if isinstance(proof, str | bytes | bytearray) or not isinstance(proof, Sequence):
        raise InvalidInput(
            f"proof {repr(proof)[:100]} is not a list of hashes; give the hashes in proof order",
            proof=repr(proof)[:100],
        )
    return [_hash(item, f"proof[{i}]") for i, item in enumerate(proof)]


def _split(size: int) -> int:
    """``k``: the largest power of two strictly below ``size`` (``size`` >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


class CompactTree:
    """The root of a growing log from a stack of perfect-subtree roots, one per set bit of its
    size, largest (leftmost) first: appending is amortised one hash, the root ``O(log n)``.

    ``nodes`` and ``size`` are the whole state: save them beside an anchor and ``restore`` later to
    keep appending without reading the log again.
    """

    def __init__(self) -> None:
        self._size = 0
        self._nodes: list[bytes] = []

    @classmethod
    def restore(cls, size: int, nodes: Iterable[bytes]) -> CompactTree:
        """A tree from a saved ``size`` and ``nodes``; their count must match the size's bits."""
        size = _count(size, "size")
        state = [_hash(node, f"nodes[{i}]") for i, node in enumerate(nodes)]
        if len(state) != size.bit_count():
            raise InvalidInput(
                f"a compact tree of size {size} holds {size.bit_count()} nodes, not {len(state)}; "
                "restore the size and nodes saved together",
                size=size,
                nodes=len(state),
            )
        tree = cls()
        tree._size, tree._nodes = size, state
        return tree

    @property
    def size(self) -> int:
        return self._size

    @property
    def nodes(self) -> tuple[bytes, ...]:
        return tuple(self._nodes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash (``leaf_hash(entry)``) at the end of the log."""
        node = _hash(leaf, "leaf hash")
        size = self._size
        # Every trailing set bit of the old size is a perfect subtree the new leaf completes.
        while size & 1:
            node = node_hash(self._nodes.pop(), node)
            size >>= 1
        self._nodes.append(node)
        self._size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def push(self, leaf: bytes) -> list[bytes]:
        """``append``, returning the perfect subtrees the leaf completes, smallest first: entry
        ``j`` is the root of the block of ``2^(j+1)`` leaves that now ends with it (none when
        the new size is odd). Kept as they come, they are the nodes the ``*_from_nodes``
        provers read."""
        node = _hash(leaf, "leaf hash")
        size, completed = self._size, []
        while size & 1:
            node = node_hash(self._nodes.pop(), node)
            completed.append(node)
            size >>= 1
        self._nodes.append(node)
        self._size += 1
        return completed

    def root(self) -> bytes:
        """``MTH`` of the leaves appended so far (``EMPTY_ROOT`` for none)."""
        if not self._nodes:
            return EMPTY_ROOT
        root = self._nodes[-1]
        for node in reversed(self._nodes[:-1]):
            root = node_hash(node, root)
        return root


def _range_root(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    tree = CompactTree()
    tree.extend(leaves[start:end])
    return tree.root()


def root_of(leaves: Sequence[bytes]) -> bytes:
    """``MTH`` of the leaf hashes ``leaves`` (RFC 6962 section 2.1)."""
    return _range_root(leaves, 0, len(leaves))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """``PATH(index, D[n])``: the audit path of leaf ``index`` in the tree of ``leaves``, the
    sibling nearest the leaf first (RFC 6962 section 2.1.1)."""
    index, size = _count(index, "leaf index"), len(leaves)
    if index >= size:
        raise InvalidInput(
            f"leaf index {index} is outside a tree of {size} leaves; "
            f"prove an index from 0 to {size - 1}",
            index=index,
            size=size,
        )
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:  # descend from the root; each level's sibling subtree joins the path
        k = _split(end - start)
        if index < start + k:
            path.append(_range_root(leaves, start + k, end))
            end = start + k
        else:
            path.append(_range_root(leaves, start, start + k))
            start += k
    return path[::-1]


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """``PROOF(old_size, D[n])``: what shows that the tree of the first ``old_size`` leaves is a
    prefix of the tree of all ``leaves`` (RFC 6962 section 2.1.2); empty for 0 and for n."""
    old_size, size = _count(old_size, "old size"), len(leaves)
    if old_size > size:
        raise InvalidInput(
            f"old size {old_size} is larger than the tree's {size} leaves; "
            "a consistency proof goes from an earlier, smaller tree to a later one",
            old_size=old_size,
            size=size,
        )
    if old_size in (0, size):
        return []
    proof: list[bytes] = []
    start, end, m, whole = 0, size, old_size, True  # `whole`: SUBPROOF's b, m is still a root
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(_range_root(leaves, start + k, end))
            end = start + k
        else:
            proof.append(_range_root(leaves, start, start + k))
            start, m, whole = start + k, m - k, False
    if not whole:
        proof.append(_range_root(leaves, start, end))
    return proof[::-1]


NodeReader: TypeAlias = Callable[[int, int], bytes]
"""``node(level, index)``: the root of the perfect subtree over leaves ``index * 2^level`` to
``(index + 1) * 2^level - 1`` (level 0: the leaf hashes themselves)."""


def perfect_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every perfect aligned subtree of ``leaves``, level by level (``levels[0]`` the leaves):
    an in-memory ``NodeReader`` is ``lambda level, index: levels[level][index]``. ``O(n)``
    hashes once, for a caller that proves many sizes of one list."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
    return levels


def compact_range(node: NodeReader, size: int) -> list[bytes]:
    """The perfect subtrees whose concatenation is the tree of ``size`` leaves, largest (leftmost)
    first: what ``CompactTree.nodes`` holds at that size, read as ``size.bit_count()`` nodes."""
    size, nodes, start = _count(size, "size"), [], 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            nodes.append(_hash(node(level, start >> level), f"node ({level}, {start >> level})"))
            start += 1 << level
    return nodes


class _StoredTree:
    """The tree of ``size`` leaves over a ``NodeReader``: the root of any subtree a proof names.

    A proof's subtrees are the ranges RFC 6962's recursion visits: each is perfect and aligned
    (one stored node), or runs to the tree's end (a suffix of the compact range, folded from the
    right: all of them cost ``size.bit_count()`` reads and hashes, once)."""

    def __init__(self, node: NodeReader, size: int) -> None:
        self._node, self.size = node, size
        starts, start = [], 0
        for level in reversed(range(size.bit_length())):
            if size >> level & 1:
                starts.append(start)
                start += 1 << level
        self._edge: dict[int, bytes] = {}
        root = b""
        for start, level_node in zip(
            reversed(starts), reversed(compact_range(node, size)), strict=True
        ):
            root = node_hash(level_node, root) if root else level_node
            self._edge[start] = root  # the root of leaves start..size-1
        self.root = root or EMPTY_ROOT

    def subtree(self, start: int, end: int) -> bytes:
        width = end - start
        if width & (width - 1) == 0 and start % width == 0:
            level = width.bit_length() - 1
            return _hash(self._node(level, start >> level), f"node ({level}, {start >> level})")
        return self._edge[start]  # end == size: RFC 6962 only splits off ragged right edges


def root_from_nodes(node: NodeReader, size: int) -> bytes:
    """``MTH`` of the first ``size`` leaves from stored perfect subtrees: ``O(log n)`` reads."""
    return _StoredTree(node, _count(size, "size")).root


def inclusion_proof_from_nodes(
    node: NodeReader, size: int, index: int
) -> tuple[list[bytes], bytes]:
    """``inclusion_proof`` of ``index`` in the tree of ``size`` leaves, byte for byte, and that
    tree's root, from stored perfect subtrees: ``O(log n)`` reads."""
    index, size = _count(index, "leaf index"), _count(size, "size")
    if index >= size:
        raise InvalidInput(
            f"leaf index {index} is outside a tree of {size} leaves; "
            f"prove an index from 0 to {size - 1}",
            index=index,
            size=size,
        )
    tree = _StoredTree(node, size)
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:  # the reference's descent, each sibling read instead of hashed
        k = _split(end - start)
        if index < start + k:
            path.append(tree.subtree(start + k, end))
            end = start + k
        else:
            path.append(tree.subtree(start, start + k))
            start += k
    return path[::-1], tree.root


def consistency_proof_from_nodes(
    node: NodeReader, size: int, old_size: int
) -> tuple[list[bytes], bytes, bytes]:
    """``consistency_proof`` from ``old_size`` to ``size`` leaves, byte for byte, and the two
    roots, from stored perfect subtrees: ``O(log n)`` reads."""
    old_size, size = _count(old_size, "old size"), _count(size, "size")
    if old_size > size:
        raise InvalidInput(
            f"old size {old_size} is larger than the tree's {size} leaves; "
            "a consistency proof goes from an earlier, smaller tree to a later one",
            old_size=old_size,
            size=size,
        )
    tree = _StoredTree(node, size)
    old_root = tree.root if old_size == size else _StoredTree(node, old_size).root
    if old_size in (0, size):
        return [], old_root, tree.root
    proof: list[bytes] = []
    start, end, m, whole = 0, size, old_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(tree.subtree(start + k, end))
            end = start + k
        else:
            proof.append(tree.subtree(start, start + k))
            start, m, whole = start + k, m - k, False
    if not whole:
        proof.append(tree.subtree(start, end))
    return proof[::-1], old_root, tree.root


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree of ``size`` leaves
    whose root is ``root`` (RFC 9162 section 2.1.3.2)."""
    node, expected = _hash(leaf, "leaf hash"), _hash(root, "root")
    index, size, path = _count(index, "leaf index"), _count(size, "size"), _proof(proof)
    if index >= size:
        return False
    fn, sn = index, size - 1
    for sibling in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            while not fn & 1 and fn != 0:  # a right edge: skip the levels with no right sibling
                fn, sn = fn >> 1, sn >> 1
        else:
            node = node_hash(node, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and node == expected


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """Whether ``proof`` shows that the tree of ``old_size`` leaves with root ``old_root`` is a
    prefix of the tree of ``new_size`` leaves with root ``new_root`` (RFC 9162 section 2.1.4.2)."""
    old_size, new_size = _count(old_size, "old size"), _count(new_size, "new size")
    first, second, path = _hash(old_root, "old root"), _hash(new_root, "new root"), _proof(proof)
    if old_size > new_size:
        return False
    if old_size == 0:
        return not path and first == EMPTY_ROOT and (new_size > 0 or second == EMPTY_ROOT)
    if old_size == new_size:
        return not path and first == second
    if not path:
        return False
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node of the new tree
        path.insert(0, first)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(node, fr), node_hash(node, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, node)
        fn, sn = fn >> 1, sn >> 1
    return fr == first and sr == second and sn == 0
