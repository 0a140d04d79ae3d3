"""The audit log's Merkle tree: leaves are the lines' exact bytes, indexes run on across rotated
files, the tree kept beside the log agrees with the file, and an anchored log rewritten later is
caught; a receipt's proof is checked without the log. Proofs are built from the perfect subtrees
stored beside the leaves and equal the reference provers' byte for byte; stored nodes that do
not match the saved tree get it rebuilt, never trusted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.core import merkle_log
from registry.core.audit import AuditLog, last_appended
from registry.core.audit_chain import make_line, parse_line, sha256_hex, verify
from registry.core.audit_key import AuditKey, load_key
from registry.core.audit_nodes import NodeFiles
from registry.core.audit_rotate import rotate
from registry.core.audit_tree import AuditTree, first_index, log_files
from registry.core.digest import Digest
from registry.core.receipts import (
    InclusionProof,
    Receipt,
    check_anchors,
    check_entry,
    check_inclusion,
    load_json,
)
from registry.errors import AuditLogCorrupt, InvalidInput, NotFound

SERVICE = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
OTHER = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"
CONTRACT = "0xF2E246BB76DF876Cef8b38ae84130F4F55De395b"
MODEL = Digest.parse("ab" * 32)


@pytest.fixture
def key(tmp_path: Path) -> AuditKey:
    return load_key(tmp_path / "audit.key", create=True)


@pytest.fixture
def log(tmp_path: Path, key: AuditKey) -> AuditLog:
    return AuditLog(tmp_path / "logs" / "audit.log", key)


def all_lines(log_path: Path) -> list[bytes]:
    """Every line of every file of the log, oldest file first, as the tree should see them."""
    lines: list[bytes] = []
    for log_file in log_files(log_path):
        file_lines = log_file.path.read_bytes().splitlines()
        lines.extend(file_lines if log_file.entries is None else file_lines[: log_file.entries])
    return lines


def expected_root(log_path: Path) -> bytes:
    return merkle_log.root_of([merkle_log.leaf_hash(line) for line in all_lines(log_path)])


def predict(log: AuditLog, digest: Digest = MODEL, block: int = 7) -> tuple[int, bytes]:
    log.append("predict", digest=str(digest), block=block, outcome="predicted", images=1)
    appended = last_appended()
    assert appended is not None and appended.index is not None
    return appended.index, appended.line


def test_each_append_names_its_line_and_its_position_in_the_whole_log(log: AuditLog) -> None:
    written = [predict(log, block=n) for n in range(5)]

    lines = log.path.read_bytes().splitlines()
    assert [index for index, _ in written] == [1, 2, 3, 4, 5]  # line 0 is the header
    for index, line in written:
        assert lines[index] == line


def test_indexes_run_on_across_a_rotation_and_the_tree_spans_every_file(
    log: AuditLog, key: AuditKey
) -> None:
    for _ in range(3):
        predict(log)
    rotate(log.path, key)
    index, line = predict(log)

    # 4 entries sealed (header + 3), the new file's header is entry 4, this one entry 5.
    assert index == 5
    assert all_lines(log.path)[5] == line
    assert first_index(log.path.parent, log.path.read_bytes().splitlines()[0]) == 4
    tree = AuditTree(log.path)
    state = tree.catch_up()
    assert state.size == 6
    assert state.root == expected_root(log.path)
    assert tree.entry(5) == line
    assert tree.entry(2) == all_lines(log.path)[2]


def test_catch_up_resumes_from_its_saved_state_and_follows_a_rotation(
    log: AuditLog, key: AuditKey
) -> None:
    tree = AuditTree(log.path)
    for _ in range(4):
        predict(log)
    first = tree.catch_up()
    for _ in range(3):
        predict(log)
    rotate(log.path, key)  # the file read so far is now the sealed one, under another name
    predict(log)

    state = tree.catch_up()

    assert first.size == 5
    assert state.size == 5 + 3 + 2
    assert state.root == expected_root(log.path)
    assert len(tree.leaf_hashes(state.size)) == state.size


def test_a_saved_state_that_does_not_match_the_file_is_rebuilt_from_the_file(
    log: AuditLog,
) -> None:
    tree = AuditTree(log.path)
    for _ in range(4):
        predict(log)
    stale = tree.catch_up()
    # The last line read is replaced by another of the same length: the state's hash of it no
    # longer matches, so the tree is rebuilt rather than continued from a line that changed.
    raw = log.path.read_bytes()
    log.path.write_bytes(raw[:-3] + (b"X" if raw[-3:-2] != b"X" else b"Y") + raw[-2:])

    state = tree.catch_up()

    assert state.size == stale.size
    assert state.root != stale.root
    assert state.root == expected_root(log.path)


def test_entries_written_by_two_writers_of_one_file_get_distinct_indexes_the_tree_agrees_with(
    tmp_path: Path, key: AuditKey
) -> None:
    path = tmp_path / "logs" / "audit.log"
    one, two = AuditLog(path, key), AuditLog(path, key)  # two worker processes, one file
    written = [predict(one if n % 2 else two, block=n) for n in range(6)]

    tree = AuditTree(path)
    tree.catch_up()
    assert sorted(index for index, _ in written) == list(range(1, 7))
    for index, line in written:
        assert tree.entry(index) == line


def test_only_one_holder_of_the_anchoring_lock_at_a_time(log: AuditLog) -> None:
    tree = AuditTree(log.path)
    with tree.exclusive() as first, tree.exclusive() as second:
        assert first is True
        assert second is False
    with tree.exclusive() as again:
        assert again is True


def test_an_entry_changed_after_the_tree_read_it_is_refused_not_served(log: AuditLog) -> None:
    tree = AuditTree(log.path)
    index, _ = predict(log)
    tree.catch_up()
    log.path.write_bytes(log.path.read_bytes().replace(b'"block":7', b'"block":8'))

    with pytest.raises(AuditLogCorrupt):
        tree.entry(index)


def test_the_empty_tree_before_any_catch_up_has_the_empty_root_and_proofs(
    log: AuditLog,
) -> None:
    tree = AuditTree(log.path)

    assert tree.consistency(0, 0) == ([], merkle_log.EMPTY_ROOT, merkle_log.EMPTY_ROOT)
    assert tree.leaf_hashes(0) == []


def test_an_entry_beyond_the_tree_is_not_found(log: AuditLog) -> None:
    tree = AuditTree(log.path)
    tree.catch_up()
    predict(log)
    with pytest.raises(NotFound):
        tree.entry(1)


def test_a_sealed_file_moved_away_makes_indexes_unknown_rather_than_wrong(
    log: AuditLog, key: AuditKey
) -> None:
    predict(log)
    _, seal = rotate(log.path, key)
    (log.path.parent / seal.file).rename(log.path.parent.parent / seal.file)
    fresh = AuditLog(log.path, key)  # a restarted service

    fresh.append("verify", digest=str(MODEL))

    appended = last_appended()
    assert appended is not None and appended.index is None
    with pytest.raises(AuditLogCorrupt, match="not beside it"):
        log_files(log.path)


# --------------------------------------------------------------------------------------------
# Anchors against the local log
# --------------------------------------------------------------------------------------------


def rewrite_with_key(path: Path, key: AuditKey, seq: int, **changes: Any) -> None:
    """Edit entry ``seq`` and recompute the whole keyed chain after it, as an insider with the
    key would: the hash chain verifies again, only an anchor can tell."""
    lines = path.read_bytes().splitlines()
    out: list[bytes] = []
    prev = "0" * 64
    for number, raw in enumerate(lines, start=1):
        entry = parse_line(raw)
        if number >= seq:
            body = {
                k: v for k, v in entry.items() if k not in {"seq", "time", "event", "prev", "hash"}
            }
            if number == seq:
                body.update(changes)
            _, line = make_line(entry["event"], body, number, prev, key)
            raw = line[:-1]
        out.append(raw)
        prev = sha256_hex(raw)
    path.write_bytes(b"\n".join(out) + b"\n")


def test_every_anchor_of_an_untouched_log_matches_and_extends_the_one_before(
    log: AuditLog,
) -> None:
    tree = AuditTree(log.path)
    anchors = []
    for block in (10, 20, 30):
        predict(log)
        state = tree.catch_up()
        anchors.append((state.size, state.root, block))

    checks = check_anchors(log.path, anchors)

    assert [c.problem for c in checks] == [None, None, None]
    assert [c.consistent_with_previous for c in checks] == [None, True, True]


def test_a_log_rewritten_after_its_anchor_is_caught_though_its_keyed_chain_was_recomputed(
    log: AuditLog, key: AuditKey
) -> None:
    for _ in range(3):
        predict(log)
    anchored = AuditTree(log.path).catch_up()
    predict(log)

    rewrite_with_key(log.path, key, 2, digest=str(Digest.parse("cd" * 32)))

    assert verify(log.path, key).entries == 5  # the hash chain alone sees nothing
    (check,) = check_anchors(log.path, [(anchored.size, anchored.root, 12)])
    assert check.problem is not None and "rewritten after block 12" in check.problem


def test_a_log_cut_short_below_an_anchor_is_caught(log: AuditLog) -> None:
    for _ in range(3):
        predict(log)
    anchored = AuditTree(log.path).catch_up()
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join(lines[:-1]))

    (check,) = check_anchors(log.path, [(anchored.size, anchored.root, 5)])

    assert check.problem is not None and "removed" in check.problem


def test_two_anchors_that_do_not_extend_one_another_are_caught(log: AuditLog) -> None:
    tree = AuditTree(log.path)
    predict(log)
    first = tree.catch_up()
    predict(log)
    second = tree.catch_up()
    forged_first = merkle_log.leaf_hash(b"another log")

    checks = check_anchors(log.path, [(first.size, forged_first, 1), (second.size, second.root, 2)])

    assert checks[0].problem is not None
    assert checks[1].consistent_with_previous is False and checks[1].problem is not None


# --------------------------------------------------------------------------------------------
# A receipt and its proof, without the log
# --------------------------------------------------------------------------------------------


def receipt_and_proof(
    log: AuditLog, digest: Digest = MODEL
) -> tuple[Receipt, InclusionProof, bytes]:
    index, line = predict(log, digest, block=7)
    predict(log)
    tree = AuditTree(log.path)
    state = tree.catch_up()
    path, root = tree.inclusion(index, state.size)
    receipt = Receipt.parse(
        {
            "receipt": {
                "log_index": index,
                "leaf_hash": merkle_log.leaf_hash(line).hex(),
                "model_digest": str(digest),
                "verdict_block": 7,
                "service": SERVICE,
                "chain_id": 1,
                "contract": CONTRACT,
            }
        }
    )
    proof = InclusionProof.parse(
        {
            "log_index": index,
            "size": state.size,
            "entry": line.decode(),
            "proof": [p.hex() for p in path],
        }
    )
    return receipt, proof, root


def with_path(proof: InclusionProof, path: list[bytes]) -> InclusionProof:
    return InclusionProof(proof.log_index, proof.size, proof.entry, tuple(path))


def test_a_receipt_with_its_proof_verifies_against_the_anchored_root(log: AuditLog) -> None:
    receipt, proof, root = receipt_and_proof(log)

    assert check_entry(receipt, proof, service=SERVICE, model=MODEL) is None
    result = check_inclusion(receipt, proof, root, service=SERVICE)

    assert result.verified, result.message
    assert len(proof.path) <= (proof.size - 1).bit_length()  # O(log n) hashes


def test_a_forged_proof_is_not_verified(log: AuditLog) -> None:
    receipt, proof, root = receipt_and_proof(log)
    forged = [bytes([proof.path[0][0] ^ 1]) + proof.path[0][1:], *proof.path[1:]]

    result = check_inclusion(receipt, with_path(proof, forged), root, service=SERVICE)

    assert (result.verified, result.reason) == (False, "proof_invalid")


def test_a_truncated_proof_is_not_verified(log: AuditLog) -> None:
    receipt, proof, root = receipt_and_proof(log)
    assert len(proof.path) >= 2

    result = check_inclusion(
        receipt, with_path(proof, list(proof.path[:-1])), root, service=SERVICE
    )

    assert (result.verified, result.reason) == (False, "proof_invalid")


def test_a_receipt_for_another_model_is_refused(log: AuditLog) -> None:
    receipt, proof, _ = receipt_and_proof(log)

    result = check_entry(receipt, proof, service=SERVICE, model=Digest.parse("cd" * 32))

    assert result is not None and result.reason == "other_model"


def test_a_receipt_claiming_another_model_than_its_entry_records_is_refused(
    log: AuditLog,
) -> None:
    receipt, proof, _ = receipt_and_proof(log)
    other = Digest.parse("cd" * 32)
    claimed = Receipt(
        receipt.log_index, receipt.leaf_hash, other, 7, SERVICE, receipt.chain_id, CONTRACT
    )

    result = check_entry(claimed, proof, service=SERVICE, model=other)

    assert result is not None and result.reason == "entry_mismatch"


def test_a_receipt_naming_another_service_than_the_pinned_one_is_refused(log: AuditLog) -> None:
    receipt, proof, _ = receipt_and_proof(log)

    result = check_entry(receipt, proof, service=OTHER)

    assert result is not None and result.reason == "other_service"


def test_no_anchored_root_at_the_proofs_size_is_not_verified(log: AuditLog) -> None:
    receipt, proof, _ = receipt_and_proof(log)

    result = check_inclusion(receipt, proof, None, service=SERVICE)

    assert (result.verified, result.reason) == (False, "not_anchored")


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.update(proof=["zz" * 32]),
        lambda p: p.update(proof=["ab" * 31]),
        lambda p: p.update(proof="ab" * 32),
        lambda p: p.pop("entry"),
        lambda p: p.update(size=-1),
        lambda p: p.update(log_index=True),
    ],
)
def test_a_malformed_proof_is_unusable_input(damage: Any) -> None:
    proof: dict[str, Any] = {"log_index": 1, "size": 2, "entry": "{}", "proof": ["ab" * 32]}
    damage(proof)
    with pytest.raises(InvalidInput):
        InclusionProof.parse(proof)


def test_a_file_that_is_not_json_is_unusable_input() -> None:
    with pytest.raises(InvalidInput):
        load_json(b'{"log_index": 1, "log_index": 2}', "receipt")
    with pytest.raises(InvalidInput):
        load_json(b"not json", "proof")
    assert load_json(json.dumps({"a": 1}).encode(), "proof") == {"a": 1}


# --------------------------------------------------------------------------------------------
# Proofs from the stored perfect subtrees
# --------------------------------------------------------------------------------------------

# 260 entries cross a 256-leaf block, so nine levels are stored and most sizes are ragged.
LOG_ENTRIES = 260


def stored_levels(directory: Path) -> list[list[bytes]]:
    """What the level files hold, level 1 upward, split into 32-byte nodes."""
    levels = []
    for level in range(1, 64):
        path = directory / f"audit.level-{level}"
        if not path.exists():
            break
        raw = path.read_bytes()
        levels.append([raw[i : i + 32] for i in range(0, len(raw), 32)])
    return levels


def expected_levels(tree: AuditTree) -> list[list[bytes]]:
    levels = merkle_log.perfect_levels(tree.leaf_hashes(tree.tree_size()))[1:]
    return [level for level in levels if level]


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> AuditTree:
    """A log of ``LOG_ENTRIES`` entries caught up in three uneven steps (resuming twice)."""
    directory = tmp_path_factory.mktemp("grown")
    log = AuditLog(directory / "audit.log", load_key(directory / "audit.key", create=True))
    tree = AuditTree(log.path)
    for step in (37, 128, LOG_ENTRIES - 1 - 37 - 128):  # the header is entry 0
        for block in range(step):
            predict(log, block=block)
        tree.catch_up()
    assert tree.tree_size() == LOG_ENTRIES
    return tree


def test_the_level_files_hold_every_perfect_subtree_of_the_leaves(grown: AuditTree) -> None:
    assert stored_levels(grown.log.parent) == expected_levels(grown)
    assert len(stored_levels(grown.log.parent)) == LOG_ENTRIES.bit_length() - 1


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_proofs_from_stored_nodes_equal_the_reference_proofs_byte_for_byte(
    grown: AuditTree, data: st.DataObject
) -> None:
    size = data.draw(st.integers(1, LOG_ENTRIES), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    first = data.draw(st.integers(0, size), label="first")
    leaves = grown.leaf_hashes(size)

    assert grown.inclusion(index, size) == (
        merkle_log.inclusion_proof(leaves, index),
        merkle_log.root_of(leaves),
    )
    assert grown.consistency(first, size) == (
        merkle_log.consistency_proof(leaves, first),
        merkle_log.root_of(leaves[:first]),
        merkle_log.root_of(leaves),
    )


def test_a_data_dir_from_before_the_levels_answers_and_gets_them_on_the_next_catch_up(
    log: AuditLog,
) -> None:
    tree = AuditTree(log.path)
    for block in range(20):
        predict(log, block=block)
    state = tree.catch_up()
    for path in log.path.parent.glob("audit.level-*"):
        path.unlink()
    leaves = tree.leaf_hashes(state.size)

    with NodeFiles(tree.leaves_path, 40) as stored:
        assert not stored.covers(state.size)
    assert tree.inclusion(5, state.size) == (
        merkle_log.inclusion_proof(leaves, 5),
        merkle_log.root_of(leaves),
    )
    predict(log)
    new = tree.catch_up()

    with NodeFiles(tree.leaves_path, 40) as stored:
        assert stored.covers(new.size)
    assert stored_levels(log.path.parent) == expected_levels(tree)
    assert new.root == expected_root(log.path)


def test_nodes_a_catch_up_cut_short_wrote_past_the_state_are_cut_back(log: AuditLog) -> None:
    tree = AuditTree(log.path)
    for block in range(11):
        predict(log, block=block)
    state = tree.catch_up()
    # A catch-up that died after writing nodes but before its state: nodes nobody counted.
    for level in (1, 2, 3, 5):
        with (log.path.parent / f"audit.level-{level}").open("ab") as f:
            f.write(b"\xee" * 32 * 3)
    with tree.leaves_path.open("ab") as f:
        f.write(b"\xee" * 40 * 5)

    for block in range(6):
        predict(log, block=block)
    new = tree.catch_up()

    assert new.size == state.size + 6
    assert new.root == expected_root(log.path)
    assert stored_levels(log.path.parent) == expected_levels(tree)


@pytest.mark.parametrize(
    ("level", "damage"),
    [
        (3, lambda raw: raw[:-32]),  # a level file shorter than the state's tree
        (3, lambda raw: bytes([raw[0] ^ 1]) + raw[1:]),  # a node of the state's compact range
        (2, lambda raw: b""),
    ],
)
def test_stored_nodes_that_are_not_the_saved_trees_get_the_tree_rebuilt_from_the_log(
    log: AuditLog, level: int, damage: Any
) -> None:
    tree = AuditTree(log.path)
    for block in range(12):  # 13 entries: the compact range is levels 3, 2 and 0
        predict(log, block=block)
    tree.catch_up()
    path = log.path.parent / f"audit.level-{level}"
    path.write_bytes(damage(path.read_bytes()))

    predict(log)
    new = tree.catch_up()

    assert new.size == 14
    assert new.root == expected_root(log.path)
    assert stored_levels(log.path.parent) == expected_levels(tree)


def test_a_proof_over_a_stored_node_changed_after_the_catch_up_is_refused(log: AuditLog) -> None:
    tree = AuditTree(log.path)
    for block in range(12):
        predict(log, block=block)
    state = tree.catch_up()
    path = log.path.parent / "audit.level-3"
    raw = path.read_bytes()
    path.write_bytes(bytes([raw[0] ^ 1]) + raw[1:])

    with pytest.raises(AuditLogCorrupt, match="a node file was changed"):
        tree.inclusion(0, state.size)
    with pytest.raises(AuditLogCorrupt, match="a node file was changed"):
        tree.consistency(1, state.size)


def test_a_node_file_cut_while_a_proof_reads_it_is_refused_not_misread(log: AuditLog) -> None:
    tree = AuditTree(log.path)
    for block in range(12):
        predict(log, block=block)
    state = tree.catch_up()

    with NodeFiles(tree.leaves_path, 40) as stored:
        assert stored.covers(state.size)
        (log.path.parent / "audit.level-3").unlink()  # a rebuild from the log under way
        (log.path.parent / "audit.level-2").write_bytes(b"")
        with pytest.raises(AuditLogCorrupt, match="no node 0 at level 3"):
            stored.node(3, 0)
        with pytest.raises(AuditLogCorrupt, match="no node 2 at level 2"):
            stored.node(2, 2)
        assert stored.node(0, 12) == tree.leaf_hashes(state.size)[12]
