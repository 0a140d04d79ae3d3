"""OpenZeppelin's ``StandardMerkleTree``, reimplemented: one root anchors a batch of models.

A batch of registrations costs one on-chain root instead of one transaction per model, as long as
anyone can later prove that a model's record (digest, accuracy, test set, card, parent) is in the
batch. That proof only convinces
others if they can check it with their own tools, so this module follows OpenZeppelin's
``@openzeppelin/merkle-tree`` (and its Solidity ``MerkleProof``) exactly, and its test checks every
root, proof and dump against the JavaScript library itself:

- a leaf is ``keccak256(keccak256(abi.encode(values)))`` (hashed twice, so a 64-byte leaf can never
  pass for an internal node);
- an internal node is ``keccak256`` of its two children, smaller first (sorted pairs: a proof is a
  plain list of siblings, no left/right flags);
- leaves are sorted by hash and the tree is laid out as an array heap: the root at 0, the children
  of ``i`` at ``2i+1`` and ``2i+2``, the leaves at the end in reverse order;
- ``dump()`` and ``load()`` speak its JSON format, ``"standard-v1"``, so a batch manifest written
  by either side is read by the other.

The leaf encoding is a parameter (``MODEL_LEAF_ENCODING`` for a batch of models); its types are
the static ones ``registry.core.abi_static`` encodes, and values that do not fit are refused there,
more strictly than OpenZeppelin (a short ``bytes32`` is an error, not zero-padded).

Hashes and proofs are ``bytes`` here and ``0x`` hex in the dump; every function that takes a hash
accepts either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

try:
    # safe-pysha3's C Keccak (present where eth-hash's pysha3 backend is installed) costs about a
    # tenth of eth-hash's pycryptodome backend per call, and a tree of N leaves makes 3N calls.
    from sha3 import keccak_256 as _keccak_256  # type: ignore[import-not-found,unused-ignore]

    def keccak(data: bytes) -> bytes:
        return bytes(_keccak_256(data).digest())

except ImportError:  # the base install: eth-hash with pycryptodome, the same Keccak-256
    from eth_hash.auto import keccak  # type: ignore[assignment,unused-ignore]

from registry.core.abi_static import (
    HEX_BYTES,
    AbiType,
    AbiValue,
    encode,
    json_value,
    normalise,
    parse_types,
    shown,
)
from registry.errors import InvalidInput

__all__ = [
    "FORMAT",
    "MODEL_LEAF_ENCODING",
    "LeafValue",
    "MultiProof",
    "StandardMerkleTree",
    "keccak",
    "leaf_hash",
    "node_hash",
    "process_proof",
    "verify",
    "verify_multiproof",
]

FORMAT: Final = "standard-v1"
# What a batch of models commits to per checkpoint: the record `register` would anchor (digest,
# accuracy in basis points, test-set digest, card digest, parent or zero), typed as ModelRegistry's
# `Leaf` struct, so the contract's `abi.encode(digest, accuracyBps, testSetDigest, cardDigest,
# parent)` hashes to the same leaf.
MODEL_LEAF_ENCODING: Final = ("bytes32", "uint16", "bytes32", "bytes32", "bytes32")

# One value of a leaf, normalised: bytesN -> bytes, (u)intN -> int, address -> EIP-55 "0x" text.
LeafValue = AbiValue

_NODE_BYTES = 32


# --- hashing ---------------------------------------------------------------------------------


def _leaf_hash(types: tuple[AbiType, ...], leaf: tuple[LeafValue, ...]) -> bytes:
    return bytes(keccak(keccak(encode(types, leaf))))


def leaf_hash(leaf_encoding: Sequence[str], values: Sequence[object]) -> bytes:
    """``keccak256(bytes.concat(keccak256(abi.encode(values...))))``: OpenZeppelin's leaf."""
    types = parse_types(leaf_encoding)
    return _leaf_hash(types, normalise(types, values))


def node_hash(a: bytes, b: bytes) -> bytes:
    """An internal node: ``keccak256`` of the two children, the smaller first."""
    return bytes(keccak(a + b if a <= b else b + a))


def _node(value: object, what: str) -> bytes:
    """A 32-byte hash given as bytes or ``0x`` hex; anything else is bad input named as ``what``."""
    if isinstance(value, bytes | bytearray) and len(value) == _NODE_BYTES:
        return bytes(value)
    if isinstance(value, str) and len(value) == 66 and HEX_BYTES.fullmatch(value):
        return bytes.fromhex(value[2:])
    raise InvalidInput(
        f"{what} {shown(value)} is not a 32-byte hash; give 32 bytes or '0x' and 64 hex digits",
        value=shown(value),
        what=what,
    )


def _proof_nodes(proof: object) -> list[bytes]:
    if isinstance(proof, str | bytes | bytearray) or not isinstance(proof, Sequence):
        raise InvalidInput(
            f"proof {shown(proof)} is not a list of hashes; "
            "give the sibling hashes from the leaf to the root",
            proof=shown(proof),
        )
    return [_node(item, f"proof[{i}]") for i, item in enumerate(proof)]


def process_proof(leaf: bytes | str, proof: Sequence[bytes | str]) -> bytes:
    """The root that ``proof`` (siblings from the leaf up) leads to from the leaf hash ``leaf``."""
    node = _node(leaf, "leaf hash")
    for sibling in _proof_nodes(proof):
        node = node_hash(node, sibling)
    return node


def verify(
    root: bytes | str,
    leaf_values: Sequence[object],
    proof: Sequence[bytes | str],
    leaf_encoding: Sequence[str] = MODEL_LEAF_ENCODING,
) -> bool:
    """Whether ``proof`` shows the leaf ``leaf_values`` under ``root``, as Solidity's
    ``MerkleProof.verify`` would answer.

    A well-formed proof that leads elsewhere (another root, another leaf) is a ``False``; a
    malformed one (a sibling that is not 32 bytes, a value that does not fit its type) is
    ``InvalidInput``.
    """
    expected = _node(root, "root")
    return process_proof(leaf_hash(leaf_encoding, leaf_values), proof) == expected


# --- multiproofs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MultiProof:
    """Several leaves proven at once, as OpenZeppelin's ``getMultiProof`` lays it out:
    ``leaves`` in the order ``MerkleProof.multiProofVerify`` consumes them, ``proof`` the sibling
    hashes it needs, ``flags`` whether each step hashes two known nodes (True) or one and a proof
    hash (False)."""

    leaves: tuple[tuple[LeafValue, ...], ...]
    proof: tuple[bytes, ...]
    flags: tuple[bool, ...]


def _process_multiproof(leaves: list[bytes], proof: list[bytes], flags: Sequence[bool]) -> bytes:
    if len(proof) < sum(1 for flag in flags if not flag):
        raise InvalidInput(
            f"multiproof has {len(proof)} proof hashes but {len(flags)} flags need more; "
            "give the multiproof exactly as the tree produced it",
            proof_length=len(proof),
        )
    if len(leaves) + len(proof) != len(flags) + 1:
        raise InvalidInput(
            f"multiproof with {len(leaves)} leaves and {len(proof)} proof hashes cannot have "
            f"{len(flags)} flags (it needs {len(leaves) + len(proof) - 1}); "
            "give the multiproof exactly as the tree produced it",
            leaves=len(leaves),
            proof_length=len(proof),
            flags=len(flags),
        )
    # Queues read from the front; positions avoid list.pop(0)'s quadratic cost.
    stack, taken, used = list(leaves), 0, 0
    for flag in flags:
        if taken + (2 if flag else 1) > len(stack):
            raise InvalidInput(
                f"multiproof flags {shown(list(flags))} consume more nodes than the proof holds; "
                "give the multiproof exactly as the tree produced it",
                flags=len(flags),
            )
        a = stack[taken]
        if flag:
            b = stack[taken + 1]
            taken += 2
        else:
            b = proof[used]
            taken += 1
            used += 1
        stack.append(node_hash(a, b))
    # The counts checked above leave exactly one node: the last one built, or the lone proof hash.
    return stack[-1] if len(stack) > taken else proof[used]


def verify_multiproof(
    root: bytes | str,
    multiproof: MultiProof,
    leaf_encoding: Sequence[str] = MODEL_LEAF_ENCODING,
) -> bool:
    """Whether ``multiproof`` shows all its leaves under ``root``, as Solidity's
    ``MerkleProof.multiProofVerify`` would answer."""
    expected = _node(root, "root")
    types = parse_types(leaf_encoding)
    leaves = [_leaf_hash(types, normalise(types, leaf)) for leaf in multiproof.leaves]
    flags = list(multiproof.flags)
    if not all(isinstance(flag, bool) for flag in flags):
        raise InvalidInput(
            f"multiproof flags {shown(flags)} are not all true or false", flags=shown(flags)
        )
    return _process_multiproof(leaves, _proof_nodes(multiproof.proof), flags) == expected


# --- the tree --------------------------------------------------------------------------------


def _sibling(index: int) -> int:
    return index + 1 if index % 2 else index - 1


class StandardMerkleTree:
    """A built tree: its root, each value's proof, and its ``standard-v1`` dump.

    Build one with ``of(values, leaf_encoding)`` or ``load(dump)``. Values keep the order they were
    given in; ``proof(i)`` takes that index or the leaf's values.
    """

    def __init__(
        self,
        types: tuple[AbiType, ...],
        tree: list[bytes],
        values: list[tuple[LeafValue, ...]],
        tree_indices: list[int],
    ) -> None:
        self._types = types
        self._tree = tree
        self._values = values
        self._tree_indices = tree_indices
        # A value that occurs twice is looked up as its last occurrence, as OpenZeppelin does.
        self._lookup = {tree[t]: i for i, t in enumerate(tree_indices)}

    @classmethod
    def of(
        cls, values: Iterable[Sequence[object]], leaf_encoding: Sequence[str]
    ) -> StandardMerkleTree:
        """The tree of ``values`` (each one leaf: one value per type of ``leaf_encoding``)."""
        types = parse_types(leaf_encoding)
        leaves = [normalise(types, leaf) for leaf in values]
        if not leaves:
            raise InvalidInput(
                "a Merkle tree needs at least one leaf; give one or more values to anchor",
                leaves=0,
            )
        hashes = [_leaf_hash(types, leaf) for leaf in leaves]
        # Stable sort by hash, like Array.prototype.sort: duplicates keep their input order.
        order = sorted(range(len(leaves)), key=hashes.__getitem__)
        size = 2 * len(leaves) - 1
        tree: list[bytes] = [b""] * size
        tree_indices = [0] * len(leaves)
        for position, value_index in enumerate(order):
            tree_indices[value_index] = size - 1 - position
            tree[size - 1 - position] = hashes[value_index]
        for i in range(size - 1 - len(leaves), -1, -1):
            tree[i] = node_hash(tree[2 * i + 1], tree[2 * i + 2])
        return cls(types, tree, leaves, tree_indices)

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> StandardMerkleTree:
        """A tree from its ``standard-v1`` dump, every hash checked: a dump whose values, leaves
        or nodes disagree is refused, never half-loaded.

        Stricter than OpenZeppelin in one way: every leaf must carry exactly one value, so a dump
        cannot hold leaves it never shows.
        """
        if not isinstance(data, Mapping):
            raise InvalidInput(
                f"a Merkle tree dump must be a JSON object, not {type(data).__name__}",
                dump=type(data).__name__,
            )
        given_format = data.get("format")
        if given_format != FORMAT:
            raise InvalidInput(
                f"Merkle tree dump format {shown(given_format)} is not {FORMAT!r}; "
                "give a dump written by StandardMerkleTree.dump()",
                format=shown(given_format),
            )
        if "leafEncoding" not in data:
            raise InvalidInput("the Merkle tree dump has no leafEncoding", missing="leafEncoding")
        types = parse_types(data["leafEncoding"])
        raw_tree, raw_values = data.get("tree"), data.get("values")
        if not isinstance(raw_tree, list) or not raw_tree or len(raw_tree) % 2 == 0:
            raise InvalidInput(
                "the Merkle tree dump's tree is not a non-empty list of 2n-1 node hashes",
                tree=shown(raw_tree),
            )
        tree = [_node(node, f"tree[{i}]") for i, node in enumerate(raw_tree)]
        leaf_count = (len(tree) + 1) // 2
        for i in range(len(tree) - leaf_count):
            if tree[i] != node_hash(tree[2 * i + 1], tree[2 * i + 2]):
                raise InvalidInput(
                    f"tree[{i}] is not the hash of its children: the dump was altered",
                    node=i,
                )
        if not isinstance(raw_values, list) or len(raw_values) != leaf_count:
            raise InvalidInput(
                f"the Merkle tree dump has {leaf_count} leaves but its values list is "
                f"{shown(raw_values)}; every leaf needs exactly one value",
                leaves=leaf_count,
            )
        values, tree_indices, taken = [], [], set()
        for i, entry in enumerate(raw_values):
            index = entry.get("treeIndex") if isinstance(entry, Mapping) else None
            if not isinstance(index, int) or isinstance(index, bool) or index < leaf_count - 1:
                raise InvalidInput(
                    f"values[{i}] has no leaf position (treeIndex {shown(index)}); "
                    f"each value needs the index of its leaf, {leaf_count - 1}..{len(tree) - 1}",
                    value_index=i,
                )
            if index >= len(tree) or index in taken:
                raise InvalidInput(
                    f"values[{i}] points at treeIndex {index}, outside the leaves or taken by "
                    "another value",
                    value_index=i,
                )
            assert isinstance(entry, Mapping)
            leaf = normalise(types, entry.get("value"))
            if _leaf_hash(types, leaf) != tree[index]:
                raise InvalidInput(
                    f"values[{i}] does not hash to its leaf tree[{index}]: the dump was altered",
                    value_index=i,
                )
            values.append(leaf)
            tree_indices.append(index)
            taken.add(index)
        return cls(types, tree, values, tree_indices)

    @property
    def root(self) -> bytes:
        return self._tree[0]

    @property
    def leaf_encoding(self) -> tuple[str, ...]:
        return tuple(abi.name for abi in self._types)

    @property
    def values(self) -> tuple[tuple[LeafValue, ...], ...]:
        """The leaves' values, normalised, in the order they were given."""
        return tuple(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def leaf_hash(self, leaf: Sequence[object]) -> bytes:
        """The leaf hash of ``leaf``'s values under this tree's encoding."""
        return self._hash(leaf)

    def _hash(self, leaf: object) -> bytes:
        return _leaf_hash(self._types, normalise(self._types, leaf))

    def _value_index(self, leaf: int | Sequence[object]) -> int:
        if isinstance(leaf, int) and not isinstance(leaf, bool):
            if not 0 <= leaf < len(self._values):
                raise InvalidInput(
                    f"leaf index {leaf} is outside this tree's {len(self._values)} values",
                    index=leaf,
                )
            return leaf
        found = self._lookup.get(self._hash(leaf))
        if found is None:
            raise InvalidInput(
                f"leaf {shown(leaf)} is not in this tree (root 0x{self.root.hex()})",
                leaf=shown(leaf),
            )
        return found

    def _proof_at(self, tree_index: int) -> list[bytes]:
        # _sibling inlined ((i - 1) ^ 1) + 1: every proof of a batch walks this loop, and a
        # function call per level was most of the time of building them all.
        tree, proof = self._tree, []
        while tree_index > 0:
            proof.append(tree[((tree_index - 1) ^ 1) + 1])
            tree_index = (tree_index - 1) >> 1
        return proof

    def proof(self, leaf: int | Sequence[object]) -> list[bytes]:
        """The sibling hashes from the leaf up: its index among the values, or its values."""
        return self._proof_at(self._tree_indices[self._value_index(leaf)])

    def proofs(self) -> list[list[bytes]]:
        """Every value's proof, in the values' order (what a batch manifest hands out)."""
        return [self._proof_at(index) for index in self._tree_indices]

    def multiproof(self, leaves: Sequence[int | Sequence[object]]) -> MultiProof:
        """One proof for several values (indices or values), as OpenZeppelin lays it out."""
        indices = sorted(
            (self._tree_indices[self._value_index(leaf)] for leaf in leaves), reverse=True
        )
        if len(set(indices)) != len(indices):
            raise InvalidInput(
                "a multiproof cannot prove the same leaf twice; give each value once",
                leaves=len(indices),
            )
        stack, position = list(indices), 0
        proof: list[bytes] = []
        flags: list[bool] = []
        while position < len(stack) and stack[position] > 0:
            j = stack[position]
            position += 1
            sibling = _sibling(j)
            if position < len(stack) and stack[position] == sibling:
                flags.append(True)
                position += 1
            else:
                flags.append(False)
                proof.append(self._tree[sibling])
            stack.append((j - 1) // 2)
        if not indices:
            proof.append(self._tree[0])
        by_hash = self._lookup
        return MultiProof(
            leaves=tuple(self._values[by_hash[self._tree[i]]] for i in indices),
            proof=tuple(proof),
            flags=tuple(flags),
        )

    def verify(self, leaf: int | Sequence[object], proof: Sequence[bytes | str]) -> bool:
        """Whether ``proof`` leads from ``leaf`` (an index, or values that need not be in the
        tree) to this tree's root."""
        if isinstance(leaf, int) and not isinstance(leaf, bool):
            start = self._tree[self._tree_indices[self._value_index(leaf)]]
        else:
            start = self._hash(leaf)
        return process_proof(start, proof) == self.root

    def dump(self) -> dict[str, Any]:
        """The ``standard-v1`` JSON object: hashes as ``0x`` hex, integers as decimal text,
        bytes as ``0x`` hex, addresses in EIP-55 form, booleans as JSON booleans."""
        return {
            "format": FORMAT,
            "leafEncoding": list(self.leaf_encoding),
            "tree": ["0x" + node.hex() for node in self._tree],
            "values": [
                {"value": [json_value(value) for value in leaf], "treeIndex": index}
                for leaf, index in zip(self._values, self._tree_indices, strict=True)
            ],
        }
