"""Metrics on hand-made examples, and the model card's canonical form."""

from __future__ import annotations

import hashlib
import json
import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from training.card import canonical_json, card_digest, round_float
from training.errors import CardError
from training.evaluate import accuracy_bps, compute_metrics, roc_auc

NAMES3 = ("a", "b", "c")


def one_hot(predicted: list[int], k: int) -> np.ndarray:
    out = np.full((len(predicted), k), 0.1 / max(k - 1, 1))
    out[np.arange(len(predicted)), predicted] = 0.9
    return out


# --- accuracy and AUC ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("correct", "total", "bps"),
    [
        (0, 5, 0),
        (5, 5, 10_000),
        (2, 3, 6666),
        (24_999, 25_000, 9999),
        (9837, 10_000, 9837),
        (1, 7, 1428),
    ],
)
def test_accuracy_in_basis_points_is_floored(correct: int, total: int, bps: int) -> None:
    assert accuracy_bps(correct, total) == bps


@pytest.mark.parametrize(("correct", "total"), [(1, 0), (-1, 3), (4, 3)])
def test_accuracy_in_basis_points_refuses_impossible_counts(correct: int, total: int) -> None:
    with pytest.raises(ValueError):
        accuracy_bps(correct, total)


def test_auc_of_perfect_reversed_and_uninformative_scores() -> None:
    positive = np.array([False, False, True, True])
    assert roc_auc(positive, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(positive, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(positive, np.full(4, 0.5)) == 0.5
    # One positive tied with one negative counts half: (1 + 1 + 1 + 0.5) / 4.
    assert roc_auc(positive, np.array([0.1, 0.5, 0.5, 0.9])) == 0.875


def test_auc_is_undefined_with_only_one_class() -> None:
    with pytest.raises(ValueError):
        roc_auc(np.array([True, True]), np.array([0.1, 0.2]))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0])),
        min_size=2,
        max_size=40,
    ).filter(lambda rows: 0 < sum(p for p, _ in rows) < len(rows))
)
def test_rank_auc_agrees_with_scikit_learn_including_ties(rows: list[tuple[bool, float]]) -> None:
    positive = np.array([p for p, _ in rows])
    scores = np.array([s for _, s in rows])
    assert roc_auc(positive, scores) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)


def test_metrics_on_a_hand_made_three_class_example() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    predicted = [0, 1, 1, 1, 2, 0]
    m = compute_metrics(labels, one_hot(predicted, 3), NAMES3)
    assert (m.n, m.correct, m.accuracy_bps) == (6, 4, 6666)
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.confusion == ((1, 1, 0), (0, 2, 0), (1, 0, 1))
    recall = [c.recall for c in m.per_class]
    precision = [c.precision for c in m.per_class]
    assert recall == pytest.approx([0.5, 1.0, 0.5])
    assert precision == pytest.approx([0.5, 2 / 3, 1.0])
    assert m.macro_auc_ovr is not None and 0.0 < m.macro_auc_ovr < 1.0
    assert m.notes == ()


def test_perfect_classifier_has_auc_one_and_full_recall() -> None:
    labels = np.array([0, 1, 2, 2, 1, 0])
    m = compute_metrics(labels, one_hot(labels.tolist(), 3), NAMES3)
    assert m.macro_auc_ovr == 1.0
    assert m.accuracy_bps == 10_000
    assert all(c.recall == 1.0 and c.precision == 1.0 for c in m.per_class)


def test_a_class_absent_from_the_test_set_is_skipped_and_reported() -> None:
    labels = np.array([0, 0, 1, 1])
    m = compute_metrics(labels, one_hot([0, 0, 1, 1], 3), NAMES3)
    assert m.auc_skipped == ("c",)
    assert m.macro_auc_ovr == 1.0  # mean over a and b only
    c = m.per_class[2]
    assert c.support == 0 and c.recall is None and c.precision is None and c.auc is None
    assert any("'c' has no test images" in note for note in m.notes)
    assert any("predicted as 'c'" in note for note in m.notes)


def test_a_single_class_test_set_has_no_auc() -> None:
    m = compute_metrics(np.array([1, 1]), one_hot([1, 0], 2), ("x", "y"))
    assert m.macro_auc_ovr is None
    assert m.accuracy_bps == 5000


def test_metrics_refuse_mismatched_shapes_and_bad_labels() -> None:
    with pytest.raises(ValueError):
        compute_metrics(np.array([0, 1]), np.zeros((3, 2)), ("x", "y"))
    with pytest.raises(ValueError):
        compute_metrics(np.array([0, 2]), np.zeros((2, 2)), ("x", "y"))
    with pytest.raises(ValueError):
        compute_metrics(np.array([], dtype=np.int64), np.zeros((0, 2)), ("x", "y"))


def test_metrics_to_dict_is_canonicalisable() -> None:
    m = compute_metrics(np.array([0, 1]), one_hot([0, 1], 3), NAMES3)
    card = {"metrics": m.to_dict()}
    assert json.loads(canonical_json(card))["metrics"]["accuracy_bps"] == 10_000


# --- canonical JSON --------------------------------------------------------------------------


def test_canonical_json_is_sorted_compact_utf8() -> None:
    card = {"b": [1, 2.5, None, True], "a": {"é": "ü", "z": -0.0}}
    assert canonical_json(card) == '{"a":{"z":0.0,"é":"ü"},"b":[1,2.5,null,true]}'.encode()
    assert card_digest(card) == hashlib.sha256(canonical_json(card)).hexdigest()


def test_canonical_json_rounds_floats_to_twelve_significant_digits() -> None:
    assert canonical_json({"x": 0.1 + 0.2}) == b'{"x":0.3}'
    assert canonical_json({"x": 1 / 3}) == b'{"x":0.333333333333}'
    assert canonical_json({"x": 1e-7}) == b'{"x":1e-07}'
    assert canonical_json({"x": (1,)}) == b'{"x":[1]}'
    assert round_float(123456789.123456789) == 123456789.123


@pytest.mark.parametrize(
    ("card", "path"),
    [
        ({"a": math.nan}, "a"),
        ({"a": [1, math.inf]}, "a[1]"),
        ({"a": {1: "x"}}, "a"),
        ({"a": b"bytes"}, "a"),
        ({"a": {1, 2}}, "a"),
        ({"a": "\ud800"}, ""),
    ],
)
def test_canonical_json_refuses_values_without_one_canonical_form(
    card: dict[str, Any], path: str
) -> None:
    with pytest.raises(CardError) as info:
        canonical_json(card)
    assert info.value.path == path


def test_canonical_json_refuses_absurd_nesting() -> None:
    card: dict[str, Any] = {}
    node = card
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(CardError, match="nested deeper"):
        canonical_json(card)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(st.characters(exclude_categories=["Cs"]), max_size=5), children, max_size=4
        )
    ),
    max_leaves=20,
)
cards = st.dictionaries(st.text(max_size=5), json_values, max_size=6)


@settings(max_examples=300, deadline=None)
@given(cards)
def test_canonical_json_round_trips_through_a_json_parser(card: dict[str, Any]) -> None:
    # What the registry does with an upload: parse it, re-canonicalise, compare bytes.
    data = canonical_json(card)
    assert canonical_json(json.loads(data)) == data


@settings(max_examples=300, deadline=None)
@given(cards, st.randoms(use_true_random=False))
def test_canonical_json_does_not_depend_on_key_order(
    card: dict[str, Any], rnd: random.Random
) -> None:
    def shuffled(value: Any) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            rnd.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(value, list):
            return [shuffled(v) for v in value]
        return value

    assert canonical_json(shuffled(card)) == canonical_json(card)
    assert card_digest(shuffled(card)) == card_digest(card)
