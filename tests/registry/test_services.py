"""registry.services: the one register and revoke path of the CLI and the HTTP API.

Real LeNet safetensors checkpoints and canonical model cards (``apikit``), on the session's
in-process chain. The API half sends the very same inputs to ``POST /models`` and expects the
refusal ``check_registration`` raised, as the API's one error shape.
"""

from __future__ import annotations

import json
import math
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from apikit import TEST_SET_DIGEST, Api, assert_error, digest_of, make_card, make_checkpoint

from registry.chain.client import RegistryClient
from registry.core.digest import Digest, digest_bytes
from registry.core.records import RevocationReason
from registry.core.store import FileStore
from registry.errors import InvalidInput, InvalidModelCard, PickleRejected, RegistryError
from registry.services import check_registration, register_with_card, revoke

OTHER_TEST_SET = "sha256:" + "5e" * 32
PICKLE = pickle.dumps({"conv1.weight": [0.0] * 16}, protocol=4)


def never_connect() -> RegistryClient:
    raise AssertionError("a refused registration must not reach the chain")


@pytest.fixture(scope="module")
def checkpoint() -> bytes:
    return make_checkpoint(seed=21)


@pytest.fixture(scope="module")
def other() -> bytes:
    return make_checkpoint(seed=22)


# --- what check_registration refuses ------------------------------------------------------------


def test_a_pickle_is_refused_before_the_chain_is_reached() -> None:
    with pytest.raises(PickleRejected) as info:
        register_with_card(
            never_connect,
            PICKLE,
            card_digest="cd" * 32,
            accuracy_bps=9000,
            test_set_digest=TEST_SET_DIGEST,
        )
    assert "pickle" in info.value.message


def test_a_refused_registration_stores_nothing(tmp_path: Path, checkpoint, other) -> None:
    store = FileStore(tmp_path / "store")
    with pytest.raises(InvalidModelCard):
        register_with_card(never_connect, checkpoint, card=make_card(other), store=store)
    assert not store.has(digest_bytes(checkpoint).hex, "checkpoint")
    assert not store.has(digest_bytes(make_card(other)).hex, "card")


def test_a_card_written_for_another_checkpoint_is_refused_naming_both(checkpoint, other) -> None:
    with pytest.raises(InvalidModelCard) as info:
        check_registration(checkpoint, card=make_card(other))
    assert info.value.details == {
        "card_checkpoint": digest_of(other),
        "checkpoint": digest_of(checkpoint),
    }


@pytest.mark.parametrize(
    ("given", "field", "given_value", "card_value"),
    [
        ({"accuracy_bps": 9000}, "accuracy_bps", 9000, 7581),
        (
            {"test_set_digest": OTHER_TEST_SET},
            "test_set_digest",
            OTHER_TEST_SET,
            TEST_SET_DIGEST,
        ),
        ({"card_digest": "ab" * 32}, "card_digest", "sha256:" + "ab" * 32, None),
    ],
)
def test_a_value_that_contradicts_the_card_is_refused_naming_both_values(
    checkpoint, given: dict[str, Any], field: str, given_value: object, card_value: object
) -> None:
    card = make_card(checkpoint, accuracy_bps=7581)
    card_value = card_value or digest_of(card)

    with pytest.raises(InvalidInput) as info:
        check_registration(checkpoint, card=card, **given)

    assert info.value.details == {field: given_value, f"card_{field}": card_value}
    assert str(given_value) in info.value.message and str(card_value) in info.value.message


def test_values_that_agree_with_the_card_are_accepted(checkpoint) -> None:
    card = make_card(checkpoint, accuracy_bps=7581)
    request = check_registration(
        checkpoint,
        card=card,
        card_digest=digest_of(card),
        accuracy_bps=7581,
        test_set_digest=TEST_SET_DIGEST,
    )
    assert request.accuracy_bps == 7581


@pytest.mark.parametrize(
    ("given", "missing", "flags"),
    [
        ({"test_set_digest": TEST_SET_DIGEST}, ["accuracy_bps"], ["--accuracy-bps"]),
        ({"accuracy_bps": 9000}, ["test_set_digest"], ["--test-set-digest"]),
        ({}, ["accuracy_bps", "test_set_digest"], ["--accuracy-bps", "--test-set-digest"]),
    ],
)
def test_a_card_digest_alone_needs_the_accuracy_and_test_set_given(
    checkpoint, given: dict[str, Any], missing: list[str], flags: list[str]
) -> None:
    with pytest.raises(InvalidInput) as info:
        check_registration(checkpoint, card_digest="cd" * 32, **given)
    assert info.value.details["missing"] == missing
    assert all(flag in info.value.message for flag in flags)


def test_no_card_and_no_card_digest_is_refused(checkpoint) -> None:
    with pytest.raises(InvalidInput) as info:
        check_registration(checkpoint, accuracy_bps=9000, test_set_digest=TEST_SET_DIGEST)
    assert info.value.details["missing"] == ["card"]


def test_a_parent_that_contradicts_the_card_is_refused_and_one_it_lacks_is_taken(
    checkpoint,
) -> None:
    named, given = "sha256:" + "11" * 32, "sha256:" + "22" * 32
    with pytest.raises(InvalidInput) as info:
        check_registration(checkpoint, card=make_card(checkpoint, parent=named), parent=given)
    assert info.value.details == {"parent": given, "card_parent": named}

    request = check_registration(checkpoint, card=make_card(checkpoint), parent=given)
    assert request.parent == Digest.parse(given)


# --- what it anchors ----------------------------------------------------------------------------


def test_a_card_alone_supplies_accuracy_test_set_parent_and_its_own_digest(checkpoint) -> None:
    parent = "sha256:" + "33" * 32
    card = make_card(checkpoint, accuracy_bps=7581, test_set_digest=OTHER_TEST_SET, parent=parent)

    request = check_registration(checkpoint, card=card)

    assert request.digest == digest_bytes(checkpoint)
    assert request.accuracy_bps == 7581
    assert request.test_set_digest == Digest.parse(OTHER_TEST_SET)
    assert request.card_digest == digest_bytes(card)
    assert request.parent == Digest.parse(parent)


def test_register_with_card_stores_both_files_and_anchors_the_cards_facts(
    memory, tmp_path: Path, checkpoint
) -> None:
    store = FileStore(tmp_path / "store")
    card = make_card(checkpoint, accuracy_bps=7581)

    result = register_with_card(lambda: memory.client, checkpoint, card=card, store=store)

    record = memory.client.get(digest_bytes(checkpoint))
    assert record is not None and record == result.record
    assert (record.accuracy_bps, str(record.test_set_digest)) == (7581, TEST_SET_DIGEST)
    assert record.card_digest == digest_bytes(card)
    assert store.get(digest_bytes(checkpoint).hex, "checkpoint") == checkpoint
    assert store.get(digest_bytes(card).hex, "card") == card
    assert [name for name, _ in memory.events(result.tx_hash)] == ["ModelRegistered"]


# --- revoke -------------------------------------------------------------------------------------


def test_revoke_parses_reason_and_replacement_then_revokes(memory, checkpoint, other) -> None:
    connect: Callable[[], RegistryClient] = lambda: memory.client  # noqa: E731
    register_with_card(connect, checkpoint, card=make_card(checkpoint))
    register_with_card(connect, other, card=make_card(other))

    record = revoke(connect, digest_of(checkpoint), "safety-issue", digest_of(other))

    assert record.revocation is not None
    assert record.revocation.reason is RevocationReason.SAFETY_ISSUE
    assert record.revocation.replacement == digest_bytes(other)
    assert memory.client.get(digest_bytes(checkpoint)).revocation == record.revocation


@pytest.mark.parametrize(
    ("digest", "reason", "replacement", "message"),
    [
        ("sha256:1234", "other", None, "not a SHA-256 digest"),
        ("ab" * 32, "bored", None, "unknown revocation reason"),
        ("ab" * 32, "other", "zz", "not a SHA-256 digest"),
    ],
)
def test_revoke_refuses_bad_input_before_the_chain_is_reached(
    digest: str, reason: str, replacement: str | None, message: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        revoke(never_connect, digest, reason, replacement)
    assert message in info.value.message


# --- the API refuses the same inputs with the same errors ----------------------------------------


def _refusal(checkpoint: bytes, card: bytes) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        check_registration(checkpoint, card=card)
    return info.value


def _with_metadata(checkpoint: bytes, **meta: str) -> bytes:
    """``checkpoint`` with ``meta`` replacing header metadata values (the weights unchanged)."""
    (n,) = struct.unpack("<Q", checkpoint[:8])
    header = json.loads(checkpoint[8 : 8 + n])
    header["__metadata__"].update(meta)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + checkpoint[8 + n :]


def _card_with(checkpoint: bytes, **fields: Any) -> bytes:
    """``make_card``'s card with ``fields`` changed, laid out canonically but not checked."""
    card = {**json.loads(make_card(checkpoint)), **fields}
    return json.dumps(card, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("pickle", 422),
        ("card for another checkpoint", 400),
        ("card not canonical", 400),
        ("nan weight", 422),
        ("std 1e-300", 422),
        ("class name with a bidi override", 422),
        ("card model name with a bidi override", 400),
    ],
)
def test_the_api_refuses_what_check_registration_refuses_with_its_code_and_details(
    api: Api, checkpoint, other, case: str, status: int
) -> None:
    nan = checkpoint[:-4] + struct.pack("<f", math.nan)
    tiny_std = _with_metadata(checkpoint, normalization='{"mean":[0.5],"std":[1e-300]}')
    spoofed = _with_metadata(checkpoint, class_names='["normal","\\u202essenmoN"]')
    files = {
        "pickle": (PICKLE, make_card(checkpoint)),
        "card for another checkpoint": (checkpoint, make_card(other)),
        "card not canonical": (
            checkpoint,
            json.dumps(json.loads(make_card(checkpoint)), indent=1).encode(),
        ),
        "nan weight": (nan, make_card(nan)),
        "std 1e-300": (tiny_std, make_card(tiny_std)),
        "class name with a bidi override": (spoofed, make_card(spoofed)),
        "card model name with a bidi override": (
            checkpoint,
            _card_with(checkpoint, model_name="lenet5-\u202etset"),
        ),
    }[case]
    refused = _refusal(*files)

    error = assert_error(api.register(*files), status, refused.code)

    assert error["details"] == refused.details
    assert error["message"] == refused.message
    assert api.client.get(digest_bytes(files[0])) is None
    last = api.audit_entries()[-1]
    assert (last["event"], last["outcome"]) == ("register", refused.code)
