"""registry.core.merkle_batch against OpenZeppelin's own StandardMerkleTree, byte for byte.

The reference is the pinned npm package ``@openzeppelin/merkle-tree`` (package.json), driven by
tests/merkle_oz.mjs in one Node process per module: the same leaves go to both sides, and the roots,
proofs, multiproofs and ``standard-v1`` dumps must be equal, each side must load and verify what
the other wrote, and what OpenZeppelin refuses is refused here. Only the cross-check needs Node;
the rest of the file runs anywhere.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.core.abi_static import abi_encode, json_value
from registry.core.address import InvalidAddress, to_checksum_address
from registry.core.merkle_batch import (
    MODEL_LEAF_ENCODING,
    MultiProof,
    StandardMerkleTree,
    leaf_hash,
    process_proof,
    verify,
    verify_multiproof,
)
from registry.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[2]
OZ_SCRIPT = ROOT / "tests" / "merkle_oz.mjs"
OZ_PACKAGE = ROOT / "node_modules" / "@openzeppelin" / "merkle-tree" / "package.json"

# A two-field leaf keeps the generic tree tests short; the model's own five-field leaf
# (MODEL_LEAF_ENCODING) is cross-checked in BUILT below.
PAIR = ("bytes32", "uint16")
MIXED_ENCODING = ("address", "uint256", "bool", "bytes4", "int64")


def digest(i: int) -> bytes:
    return hashlib.sha256(f"checkpoint {i}".encode()).digest()


def model_leaves(n: int) -> list[tuple[bytes, int]]:
    return [(digest(i), (i * 37) % 10_001) for i in range(n)]


def model_records(n: int) -> list[tuple[bytes, int, bytes, bytes, bytes]]:
    """Leaves as a batch of models has them: digest, accuracy, test set, card, parent."""
    test_set = hashlib.sha256(b"test split").digest()
    return [
        (
            digest(i),
            (i * 37) % 10_001,
            test_set,
            digest(1000 + i),
            digest(i - 1) if i else bytes(32),
        )
        for i in range(n)
    ]


def hexed(nodes: Sequence[bytes]) -> list[str]:
    return ["0x" + node.hex() for node in nodes]


def compact(data: Any) -> str:
    """JSON as JavaScript's JSON.stringify writes it, for byte-for-byte comparisons."""
    return json.dumps(data, separators=(",", ":"))


def flip_bit(node: bytes, bit: int = 0) -> bytes:
    return bytes([node[0] ^ (1 << bit)]) + node[1:]


def as_json(leaf: tuple[Any, ...]) -> list[Any]:
    return [json_value(value) for value in leaf]


DUPLICATE = (digest(1), 9000)

# Leaf sets built by both sides: (name, encoding, leaves, multiproofs: each a list of value
# indices or values, as OpenZeppelin's getMultiProof takes them).
BUILT: list[tuple[str, tuple[str, ...], list[Any], list[list[Any]]]] = [
    ("one", PAIR, model_leaves(1), [[0], []]),
    ("two", PAIR, model_leaves(2), [[0, 1], [1]]),
    ("three", PAIR, model_leaves(3), [[0, 2], [2, 1, 0]]),
    ("seven", PAIR, model_leaves(7), [[0, 3, 5], [], list(range(7))]),
    ("hundred-twenty-eight", PAIR, model_leaves(128), [[1, 64, 127, 5], [0]]),
    # The same leaf twice: OpenZeppelin keeps both, and a lookup by value finds the last one.
    # Proving one value twice names one leaf twice: OpenZeppelin refuses that multiproof.
    (
        "duplicate-pair",
        PAIR,
        [DUPLICATE] * 2,
        [[0], [0, 1], [as_json(DUPLICATE)] * 2],
    ),
    (
        "duplicate-among-others",
        PAIR,
        [DUPLICATE, (digest(2), 8000), DUPLICATE, (digest(1), 9001)],
        [[0, 1, 3], [0, 2], [as_json(DUPLICATE), as_json((digest(2), 8000))], [0, 2, 2]],
    ),
    ("model-three", MODEL_LEAF_ENCODING, model_records(3), [[0, 2]]),
    ("model-seven", MODEL_LEAF_ENCODING, model_records(7), [[0, 3, 5], list(range(7))]),
    ("model-hundred-twenty-eight", MODEL_LEAF_ENCODING, model_records(128), [[1, 64, 127]]),
    (
        "mixed-static-types",
        MIXED_ENCODING,
        [
            ("0x" + "11" * 20, 5 * 10**18, True, b"\x12\x34\x56\x78", -5),
            (to_checksum_address("0x" + "ab" * 20), 2**256 - 1, False, b"\0\0\0\0", 2**63 - 1),
            ("0x" + "00" * 20, 0, True, b"\xff" * 4, -(2**63)),
        ],
        [[0, 2]],
    ),
]

# Leaves OpenZeppelin refuses; they must be refused here too: (name, encoding, JSON values).
REFUSED: list[tuple[str, tuple[str, ...], list[Any]]] = [
    ("no-leaves", PAIR, []),
    ("uint16-overflow", PAIR, [["0x" + "ab" * 32, "65536"]]),
    ("negative-uint", PAIR, [["0x" + "ab" * 32, "-1"]]),
    ("too-few-values", PAIR, [["0x" + "ab" * 32]]),
    ("bytes32-too-long", PAIR, [["0x" + "ab" * 33, "1"]]),
    ("not-a-number", PAIR, [["0x" + "ab" * 32, "ninety"]]),
    ("not-a-bool", ("bool",), [["yes"]]),
]

# Where OpenZeppelin is lax and this module deliberately is not: it zero-pads short values.
PADDED_BY_OPENZEPPELIN: list[tuple[str, tuple[str, ...], list[Any]]] = [
    ("short-bytes32", PAIR, [["0x1234", "1"]]),
    ("short-address", ("address",), [["0x1234"]]),
]

# A dump OpenZeppelin writes from JavaScript numbers rather than decimal text: loadable here.
NUMBERS_AS_JSON_NUMBERS = [["0x" + digest(i).hex(), 9000 + i] for i in range(5)]


def built_trees() -> dict[str, StandardMerkleTree]:
    return {name: StandardMerkleTree.of(leaves, enc) for name, enc, leaves, _ in BUILT}


def run_openzeppelin(request: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the OpenZeppelin cross-check runs its JavaScript")
    assert OZ_PACKAGE.is_file(), (
        f"{OZ_PACKAGE} is missing: run `npm ci` in {ROOT} (scripts/bootstrap.sh does) to install "
        "the pinned @openzeppelin/merkle-tree"
    )
    done = subprocess.run(
        [node, str(OZ_SCRIPT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


@pytest.fixture(scope="module")
def oz() -> dict[str, Any]:
    """OpenZeppelin's answers for every case of this file, from one Node process."""
    trees = built_trees()
    build = [
        {
            "name": name,
            "encoding": list(enc),
            "values": [as_json(tuple(leaf)) for leaf in leaves],
            "multiproofs": mp,
        }
        for name, enc, leaves, mp in BUILT
    ]
    build += [
        {"name": name, "encoding": list(enc), "values": values}
        for name, enc, values in REFUSED + PADDED_BY_OPENZEPPELIN
    ]
    build.append(
        {
            "name": "json-numbers",
            "encoding": list(PAIR),
            "values": NUMBERS_AS_JSON_NUMBERS,
        }
    )
    check = []
    for name, _, _, index_sets in BUILT:
        tree = trees[name]
        proofs = [hexed(proof) for proof in tree.proofs()]
        tampered = [hexed([flip_bit(proof[0]), *proof[1:]]) for proof in tree.proofs() if proof]
        multiproofs = [proven for items in index_sets if (proven := _multiproof(tree, items))]
        check.append(
            {
                "name": name,
                "dump": tree.dump(),
                "proofs": proofs,
                "multiproofs": [
                    {
                        "leaves": [as_json(leaf) for leaf in mp.leaves],
                        "proof": hexed(mp.proof),
                        "proofFlags": list(mp.flags),
                    }
                    for mp in multiproofs
                ],
            }
        )
        if tampered:
            check.append({"name": name + "/tampered", "dump": tree.dump(), "proofs": tampered})
    return run_openzeppelin({"build": build, "check": check})


def _multiproof(tree: StandardMerkleTree, items: list[Any]) -> MultiProof | None:
    try:
        return tree.multiproof(items)
    except InvalidInput:
        return None


CASES = [name for name, *_ in BUILT]


@pytest.mark.parametrize("name", CASES)
def test_root_proofs_and_dump_equal_openzeppelins_byte_for_byte(
    oz: dict[str, Any], name: str
) -> None:
    tree = built_trees()[name]
    theirs = oz["build"][name]
    assert theirs["ok"], theirs
    assert theirs["root"] == "0x" + tree.root.hex()
    assert theirs["proofs"] == [hexed(proof) for proof in tree.proofs()]
    assert theirs["proofsByValue"] == [hexed(tree.proof(leaf)) for leaf in tree.values]
    assert theirs["dump"] == compact(tree.dump())


@pytest.mark.parametrize("name", CASES)
def test_multiproofs_equal_openzeppelins_and_refuse_what_it_refuses(
    oz: dict[str, Any], name: str
) -> None:
    tree = built_trees()[name]
    requests = next(mp for n, _, _, mp in BUILT if n == name)
    for items, theirs in zip(requests, oz["build"][name]["multiproofs"], strict=True):
        if not theirs["ok"]:
            with pytest.raises(InvalidInput, match="same leaf twice"):
                tree.multiproof(items)
            continue
        ours = tree.multiproof(items)
        assert theirs["proof"] == hexed(ours.proof)
        assert theirs["proofFlags"] == list(ours.flags)
        assert theirs["leaves"] == [as_json(leaf) for leaf in ours.leaves]
        assert verify_multiproof(tree.root, ours, tree.leaf_encoding)


def test_openzeppelin_refuses_a_multiproof_of_one_value_twice_but_not_of_two_equal_leaves(
    oz: dict[str, Any],
) -> None:
    # Indices 0 and 1 are two leaves that hold one value: both are proven. The value given twice
    # (or an index repeated) names one leaf twice: refused, on both sides.
    assert [a["ok"] for a in oz["build"]["duplicate-pair"]["multiproofs"]] == [True, True, False]
    assert [a["ok"] for a in oz["build"]["duplicate-among-others"]["multiproofs"]] == [
        True,
        True,
        True,
        False,
    ]


@pytest.mark.parametrize("name", CASES)
def test_openzeppelin_loads_our_dump_and_verifies_our_proofs(oz: dict[str, Any], name: str) -> None:
    theirs = oz["check"][name]
    assert theirs["ok"], theirs
    assert theirs["verified"] and all(theirs["verified"])
    assert all(theirs["staticVerified"])
    assert all(theirs["multiproofVerified"])


@pytest.mark.parametrize("name", [n for n in CASES if n != "one"])
def test_openzeppelin_rejects_our_proofs_with_a_flipped_bit(oz: dict[str, Any], name: str) -> None:
    theirs = oz["check"][name + "/tampered"]
    assert theirs["ok"], theirs
    assert theirs["verified"] and not any(theirs["verified"])
    tree = built_trees()[name]
    for i, proof in enumerate(tree.proofs()):
        assert not tree.verify(i, [flip_bit(proof[0]), *proof[1:]])


@pytest.mark.parametrize("name", [*CASES, "json-numbers"])
def test_openzeppelins_dump_loads_here_to_the_same_tree(oz: dict[str, Any], name: str) -> None:
    theirs = oz["build"][name]
    loaded = StandardMerkleTree.load(json.loads(theirs["dump"]))
    assert "0x" + loaded.root.hex() == theirs["root"]
    assert [hexed(proof) for proof in loaded.proofs()] == theirs["proofs"]


def test_a_dump_of_json_numbers_reads_as_the_same_leaves(oz: dict[str, Any]) -> None:
    loaded = StandardMerkleTree.load(json.loads(oz["build"]["json-numbers"]["dump"]))
    expected = StandardMerkleTree.of(NUMBERS_AS_JSON_NUMBERS, PAIR)
    assert loaded.root == expected.root
    assert loaded.values[0] == (digest(0), 9000)


@pytest.mark.parametrize(("name", "encoding", "values"), REFUSED)
def test_leaves_openzeppelin_refuses_are_refused_here(
    oz: dict[str, Any], name: str, encoding: tuple[str, ...], values: list[Any]
) -> None:
    assert not oz["build"][name]["ok"]
    with pytest.raises(InvalidInput):
        StandardMerkleTree.of(values, encoding)


@pytest.mark.parametrize(("name", "encoding", "values"), PADDED_BY_OPENZEPPELIN)
def test_short_values_openzeppelin_pads_are_refused_here(
    oz: dict[str, Any], name: str, encoding: tuple[str, ...], values: list[Any]
) -> None:
    assert oz["build"][name]["ok"]
    with pytest.raises(InvalidInput) as refused:
        StandardMerkleTree.of(values, encoding)
    assert values[0][0] in refused.value.message


# --- without Node ----------------------------------------------------------------------------


def test_openzeppelins_documented_example_has_its_documented_root() -> None:
    # The example of @openzeppelin/merkle-tree's README (two address/uint256 leaves).
    tree = StandardMerkleTree.of(
        [
            ["0x1111111111111111111111111111111111111111", "5000000000000000000"],
            ["0x2222222222222222222222222222222222222222", "2500000000000000000"],
        ],
        ["address", "uint256"],
    )
    assert tree.root.hex() == "d4dee0beab2d53f2cc83e567171bd2820e49898130a22622b10ead383e90bd77"


def test_abi_encode_writes_one_padded_word_per_static_value() -> None:
    encoded = abi_encode(
        ["bytes32", "uint16", "address", "bool", "bytes4", "int8"],
        [digest(0), 9712, "0x" + "AB" * 20, True, "0x01020304", -1],
    )
    words = [encoded[i : i + 32] for i in range(0, len(encoded), 32)]
    assert words == [
        digest(0),
        (9712).to_bytes(32, "big"),
        bytes(12) + bytes.fromhex("ab" * 20),
        (1).to_bytes(32, "big"),
        bytes.fromhex("01020304") + bytes(28),
        b"\xff" * 32,
    ]


def test_a_leaf_is_the_double_keccak_of_its_abi_encoding() -> None:
    from eth_hash.auto import keccak

    encoded = digest(3) + (9000).to_bytes(32, "big")
    assert leaf_hash(PAIR, (digest(3), 9000)) == keccak(keccak(encoded))
    # uint16 and uint256 encode the same word: the type bounds the value, not the bytes.
    assert leaf_hash(("bytes32", "uint256"), (digest(3), 9000)) == keccak(keccak(encoded))


def test_a_model_leaf_is_the_double_keccak_of_its_five_words() -> None:
    from eth_hash.auto import keccak

    record = model_records(3)[2]
    encoded = record[0] + record[1].to_bytes(32, "big") + record[2] + record[3] + record[4]
    assert MODEL_LEAF_ENCODING == ("bytes32", "uint16", "bytes32", "bytes32", "bytes32")
    assert leaf_hash(MODEL_LEAF_ENCODING, record) == keccak(keccak(encoded))


leaf_sets = st.lists(
    st.tuples(st.binary(min_size=32, max_size=32), st.integers(0, 10_000)), min_size=1, max_size=40
)


@settings(max_examples=60, deadline=None)
@given(leaf_sets, st.data())
def test_every_proof_verifies_and_any_flipped_bit_fails(
    leaves: list[tuple[bytes, int]], data: st.DataObject
) -> None:
    tree = StandardMerkleTree.of(leaves, PAIR)
    for leaf, proof in zip(leaves, tree.proofs(), strict=True):
        assert verify(tree.root, leaf, proof, PAIR)
        assert verify("0x" + tree.root.hex(), leaf, hexed(proof), PAIR)
        if proof:
            at = data.draw(st.integers(0, len(proof) - 1))
            bit = data.draw(st.integers(0, 7))
            broken = list(proof)
            broken[at] = flip_bit(broken[at], bit)
            assert not verify(tree.root, leaf, broken, PAIR)
        assert not verify(flip_bit(tree.root, 7), leaf, proof, PAIR)
    other = (bytes(32), 10_001)
    assert not verify(tree.root, other, tree.proofs()[0], PAIR)


@settings(max_examples=30, deadline=None)
@given(leaf_sets)
def test_dump_and_load_give_back_the_same_tree(leaves: list[tuple[bytes, int]]) -> None:
    tree = StandardMerkleTree.of(leaves, PAIR)
    loaded = StandardMerkleTree.load(json.loads(json.dumps(tree.dump())))
    assert loaded.root == tree.root
    assert loaded.values == tree.values == tuple(leaves)
    assert loaded.proofs() == tree.proofs()


def test_a_proof_for_another_root_does_not_verify() -> None:
    first = StandardMerkleTree.of(model_leaves(5), PAIR)
    second = StandardMerkleTree.of(model_leaves(6), PAIR)
    leaf = model_leaves(5)[2]
    assert verify(first.root, leaf, first.proof(2), PAIR)
    assert not verify(second.root, leaf, first.proof(2), PAIR)
    assert process_proof(first.leaf_hash(leaf), first.proof(2)) == first.root


# --- bad input -------------------------------------------------------------------------------


def test_an_empty_tree_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at least one leaf") as refused:
        StandardMerkleTree.of([], PAIR)
    assert refused.value.details == {"leaves": 0}


@pytest.mark.parametrize(
    ("leaf", "type_name", "shown"),
    [
        ((digest(0), 10**5), "uint16", "100000"),
        ((digest(0), -1), "uint16", "-1"),
        ((digest(0), 1.5), "uint16", "1.5"),
        ((digest(0), True), "uint16", "True"),
        ((digest(0), " 12"), "uint16", "' 12'"),
        ((digest(0)[:31], 1), "bytes32", repr(digest(0)[:31])),
        (("0x" + "zz" * 32, 1), "bytes32", repr("0x" + "zz" * 32)),
        ((digest(0).hex(), 1), "bytes32", repr(digest(0).hex())),
    ],
)
def test_a_value_that_does_not_fit_its_type_is_refused_by_name(
    leaf: tuple[object, object], type_name: str, shown: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        StandardMerkleTree.of([leaf], PAIR)
    assert refused.value.details["value"] == shown
    assert refused.value.details["type"] == type_name
    assert shown in str(refused.value)


@pytest.mark.parametrize(
    ("encoding", "value"),
    [
        (("bool",), 1),
        (("int8",), 128),
        (("int8",), -129),
        (("bytes4",), b"\x01\x02\x03"),
    ],
)
def test_other_static_types_refuse_values_out_of_their_range(
    encoding: tuple[str, ...], value: object
) -> None:
    with pytest.raises(InvalidInput) as refused:
        abi_encode(encoding, [value])
    assert refused.value.details["value"] == repr(value)


@pytest.mark.parametrize("text", ["0x" + "11" * 19, "11" * 20, "0x" + "aB" * 20])
def test_an_address_that_is_not_one_or_fails_its_checksum_is_refused(text: str) -> None:
    with pytest.raises(InvalidAddress) as refused:
        StandardMerkleTree.of([(text,)], ["address"])
    assert refused.value.address == text
    assert refused.value.source == "address value"


def test_addresses_are_kept_in_their_eip55_form_whatever_case_they_came_in() -> None:
    lower = "0x" + "ab" * 20
    tree = StandardMerkleTree.of([(lower,), (lower.upper().replace("0X", "0x"),)], ["address"])
    assert tree.values == ((to_checksum_address(lower),),) * 2
    assert tree.dump()["values"][0]["value"] == [to_checksum_address(lower)]


@pytest.mark.parametrize(
    "type_name",
    [
        "string",
        "bytes",
        "uint256[]",
        "(uint256,bool)",
        "uint7",
        "uint264",
        "bytes33",
        "bytes0",
        "uint08",
        "Uint256",
    ],
)
def test_a_type_that_is_not_a_supported_static_type_is_refused(type_name: str) -> None:
    with pytest.raises(InvalidInput, match="not supported") as refused:
        StandardMerkleTree.of([(1,)], [type_name])
    assert refused.value.details["type"] == type_name


def test_a_leaf_with_the_wrong_number_of_values_is_refused() -> None:
    with pytest.raises(InvalidInput, match="has 1 values") as refused:
        StandardMerkleTree.of([(digest(0),)], PAIR)
    assert refused.value.details["expected"] == 2


@pytest.mark.parametrize(
    ("proof", "what"),
    [
        (["0x" + "ab" * 31], "proof[0]"),
        ([b"a" * 31], "proof[0]"),
        (["0x" + "ab" * 33], "proof[0]"),
        (["ab" * 32], "proof[0]"),
        ([bytes(32), "0x" + "g" * 64], "proof[1]"),
    ],
)
def test_a_malformed_proof_is_refused_naming_the_bad_element(
    proof: list[object], what: str
) -> None:
    tree = StandardMerkleTree.of(model_leaves(2), PAIR)
    with pytest.raises(InvalidInput) as refused:
        verify(tree.root, model_leaves(2)[0], proof, PAIR)  # type: ignore[arg-type]
    assert refused.value.details["what"] == what
    assert refused.value.details["value"] == repr(proof[-1])


def test_a_proof_that_is_not_a_list_or_a_root_that_is_not_a_hash_is_refused() -> None:
    tree = StandardMerkleTree.of(model_leaves(2), PAIR)
    with pytest.raises(InvalidInput, match="not a list of hashes"):
        verify(tree.root, model_leaves(2)[0], "0x" + "ab" * 32, PAIR)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput) as refused:
        verify(tree.root[:31], model_leaves(2)[0], tree.proof(0), PAIR)
    assert refused.value.details["what"] == "root"


def test_a_leaf_not_in_the_tree_or_an_index_outside_it_has_no_proof() -> None:
    tree = StandardMerkleTree.of(model_leaves(3), PAIR)
    with pytest.raises(InvalidInput, match="not in this tree"):
        tree.proof((digest(99), 1))
    with pytest.raises(InvalidInput, match="outside") as refused:
        tree.proof(3)
    assert refused.value.details["index"] == 3


def test_a_malformed_multiproof_is_refused() -> None:
    tree = StandardMerkleTree.of(model_leaves(7), PAIR)
    good = tree.multiproof([0, 3, 5])
    assert verify_multiproof(tree.root, good, PAIR)
    too_many_flags = MultiProof(good.leaves, good.proof, (*good.flags, True))
    with pytest.raises(InvalidInput, match="flags"):
        verify_multiproof(tree.root, too_many_flags, PAIR)
    all_true = MultiProof(good.leaves, good.proof, tuple(True for _ in good.flags))
    with pytest.raises(InvalidInput):
        verify_multiproof(tree.root, all_true, PAIR)
    other = MultiProof(
        (*good.leaves[:1], (digest(99), 1), *good.leaves[2:]), good.proof, good.flags
    )
    assert not verify_multiproof(tree.root, other, PAIR)


def _tampered(change: Any) -> dict[str, Any]:
    dump = StandardMerkleTree.of(model_leaves(4), PAIR).dump()
    changed = copy.deepcopy(dump)
    change(changed)
    return changed


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.update(format="standard-v2"), "format"),
        (lambda d: d.pop("leafEncoding"), "leafEncoding"),
        (lambda d: d.update(leafEncoding=["bytes32", "string"]), "not supported"),
        (lambda d: d["tree"].__setitem__(0, "0x" + "00" * 32), "children"),
        (lambda d: d["tree"].__setitem__(6, "0x" + "00" * 32), "children"),
        (lambda d: d["tree"].pop(), "2n-1"),
        (lambda d: d.update(tree=[]), "2n-1"),
        (lambda d: d["values"][0]["value"].__setitem__(1, "1"), "does not hash"),
        (lambda d: d["values"].pop(), "exactly one value"),
        (lambda d: d["values"][1].update(treeIndex=d["values"][0]["treeIndex"]), "taken"),
        (lambda d: d["values"][1].update(treeIndex=0), "leaf position"),
        (lambda d: d["values"][1].update(treeIndex=7), "outside"),
        (lambda d: d["values"][1].update(treeIndex="4"), "leaf position"),
    ],
)
def test_a_dump_that_was_altered_is_refused(change: Any, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        StandardMerkleTree.load(_tampered(change))
