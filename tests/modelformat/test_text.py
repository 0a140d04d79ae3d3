"""Labels that cannot be spoofed: the text rules of ``modelformat.text``, applied to a
checkpoint's class and dataset names and to a model card's displayed text alike."""

from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest
import safetensors.numpy
from lenetkit import lenet_metadata, lenet_shapes

from modelformat.header import inspect_checkpoint
from modelformat.spec import parse_metadata
from modelformat.text import ambiguous_pair, text_problem
from training.card import canonical_json
from training.errors import CardError, MalformedCheckpoint, SpecError

# Displayed as "Nonmess": the override shows the letters after it reversed, so the label reads
# as a word its bytes do not hold.
RLO_NAME = "\u202essenmoN"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (RLO_NAME, "U+202E RIGHT-TO-LEFT OVERRIDE at position 0"),
        ("nor\u200dmal", "U+200D ZERO WIDTH JOINER at position 3"),
        ("a\u2066b\u2069", "U+2066 LEFT-TO-RIGHT ISOLATE at position 1"),
        ("mal\x1b[2Jignant", "U+001B at position 3, a control character"),
        ("tab\there", "U+0009 at position 3"),
        ("line\u2028break", "U+2028 LINE SEPARATOR"),
        ("para\u2029graph", "U+2029 PARAGRAPH SEPARATOR"),
        ("private\ue000", "U+E000 at position 7, a private-use character"),
        ("lone\ud800", "U+D800 at position 4, a lone surrogate"),
        ("unassigned\U000e0080", "U+E0080 at position 10, an unassigned code point"),
        ("soft\xadhyphen", "U+00AD SOFT HYPHEN"),
        ("\ufeffbom", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
        ("normal ", "starts or ends with whitespace"),
        ("\u3000normal", "starts or ends with whitespace"),
        ("pneumoni\u0061\u0301", "not in Unicode NFC form"),
    ],
)
def test_text_that_does_not_read_as_what_it_is_is_refused_naming_the_code_point(
    text: str, named: str
) -> None:
    problem = text_problem(text)
    assert problem is not None and named in problem, problem


@pytest.mark.parametrize(
    "text",
    ["normal", "Pneumonía", "肺炎", "التهاب رئوي", "T2-weighted (axial)", "a b", "x" * 500],
)
def test_plain_text_in_any_script_passes(text: str) -> None:
    assert text_problem(text) is None


def test_names_alike_after_nfkc_are_found_and_distinct_ones_are_not() -> None:
    assert ambiguous_pair(["ﬁbrosis", "normal", "fibrosis"]) == (0, 2)
    assert ambiguous_pair(["class １", "class 1"]) == (0, 1)
    assert ambiguous_pair(["A", "a", "fibrosis"]) is None  # case is visible: EMNIST has both


# --- in the checkpoint header ---------------------------------------------------------------


def checkpoint(names: list[str], dataset: str = "pathmnist") -> bytes:
    rng = np.random.default_rng(0)
    values = {
        name: rng.standard_normal(shape).astype(np.float32)
        for name, shape in lenet_shapes(k=len(names)).items()
    }
    meta = lenet_metadata(k=len(names), names=names, dataset=dataset)
    return safetensors.numpy.save(values, metadata=meta)


def test_a_class_name_with_a_bidi_override_is_refused_naming_the_class_and_code_point() -> None:
    names = ["normal", "benign", RLO_NAME]
    meta = lenet_metadata(k=3, names=names)
    with pytest.raises(SpecError) as spec_info:
        parse_metadata(meta)
    with pytest.raises(MalformedCheckpoint) as info:
        inspect_checkpoint(checkpoint(names))

    assert (spec_info.value.key, spec_info.value.index) == ("class_names", 2)
    exc = info.value
    assert (exc.problem, exc.key, exc.details["index"]) == ("bad_metadata", "class_names", 2)
    assert "class name 2 holds U+202E RIGHT-TO-LEFT OVERRIDE at position 0" in exc.reason
    assert "\u202e" not in exc.message  # the message names it, never carries it


def test_class_names_alike_after_nfkc_are_refused_as_ambiguous() -> None:
    with pytest.raises(MalformedCheckpoint) as info:
        inspect_checkpoint(checkpoint(["ﬁbrosis", "fibrosis"]))
    assert (info.value.key, info.value.details["index"]) == ("class_names", 1)
    assert "class names 0 and 1" in info.value.reason and "NFKC" in info.value.reason


@pytest.mark.parametrize("dataset", ["path\u202emnist", " pathmnist", "pathmnist\n"])
def test_a_dataset_name_that_hides_characters_is_refused(dataset: str) -> None:
    with pytest.raises(MalformedCheckpoint) as info:
        inspect_checkpoint(checkpoint(["a", "b"], dataset=dataset))
    assert (info.value.problem, info.value.key) == ("bad_metadata", "dataset")


def test_names_in_other_scripts_and_nfc_accents_pass() -> None:
    names = ["normal", "Pneumonía", "肺炎", "التهاب رئوي"]
    assert inspect_checkpoint(checkpoint(names)).spec.class_names == tuple(names)
    assert all(unicodedata.is_normalized("NFC", n) for n in names)


# --- in the model card ------------------------------------------------------------------------


def card(**fields: object) -> dict[str, object]:
    return {
        "model_name": "lenet5-pathmnist",
        "intended_use": "research use",
        "limitations": ["not calibrated"],
        "dataset": {"name": "pathmnist"},
        "architecture": {"class_names": ["normal", "tumour"]},
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "field", "named"),
    [
        ({"model_name": "lenet5\u202e"}, "model_name", "U+202E"),
        ({"intended_use": "research\u200b use"}, "intended_use", "U+200B ZERO WIDTH SPACE"),
        ({"limitations": ["ok", "hidden\x07"]}, "limitations[1]", "U+0007"),
        ({"limitations": "one text"}, "limitations", "must be a list of texts"),
        ({"dataset": {"name": "path mnist "}}, "dataset.name", "whitespace"),
        (
            {"architecture": {"class_names": ["normal", RLO_NAME]}},
            "architecture.class_names[1]",
            "RIGHT-TO-LEFT OVERRIDE",
        ),
        (
            {"architecture": {"class_names": ["ﬁbrosis", "fibrosis"]}},
            "architecture.class_names[1]",
            "NFKC",
        ),
        ({"model_name": ""}, "model_name", "non-empty text"),
        ({"model_name": 5}, "model_name", "non-empty text"),
    ],
)
def test_a_card_whose_displayed_text_hides_characters_is_refused_naming_the_field(
    fields: dict[str, object], field: str, named: str
) -> None:
    with pytest.raises(CardError) as info:
        canonical_json(card(**fields))
    assert info.value.path == field and info.value.details["field"] == field
    assert named in info.value.message
    assert "\u202e" not in info.value.message


def test_a_card_with_plain_displayed_text_is_canonicalised() -> None:
    text = canonical_json(card(intended_use="Recherche: pneumonie (thorax) — 肺炎"))
    assert json.loads(text)["intended_use"] == "Recherche: pneumonie (thorax) — 肺炎"
    # Text nobody is shown is left to the canonical-form rules alone.
    assert canonical_json({"environment": {"platform": " Linux\t"}})
