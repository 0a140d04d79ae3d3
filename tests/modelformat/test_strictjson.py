"""The strict-JSON rules the checkpoint header and its metadata values share."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelformat.strictjson import (
    MAX_INTEGER_DIGITS,
    MAX_JSON_DEPTH,
    StrictJSONError,
    loads,
    nesting_exceeds,
)


def refused(text: str | bytes, problem: str) -> StrictJSONError:
    with pytest.raises(StrictJSONError) as info:
        loads(text)
    assert info.value.problem == problem, str(info.value)
    return info.value


@pytest.fixture
def high_recursion_limit() -> Iterator[None]:
    """Like any process that imported web3 (py_ecc and py-evm raise the limit to 100 000)."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, 100_000))
    yield
    sys.setrecursionlimit(before)


@pytest.fixture
def no_int_digit_guard() -> Iterator[None]:
    """As with PYTHONINTMAXSTRDIGITS=0: int() converts literals of any length, in quadratic time."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    yield
    sys.set_int_max_str_digits(before)


def test_plain_json_parses_as_json_loads_does() -> None:
    text = '{"a": [1, -2, 3.5, "x[{"], "b": {"c": null, "d": true}, "e": "\\u00e9"}'
    assert loads(text) == json.loads(text)
    assert loads(text.encode()) == json.loads(text)


def test_a_duplicated_key_is_refused_naming_it_at_any_depth() -> None:
    assert "'k'" in str(refused('{"k": 1, "k": 1}', "duplicate_key"))
    assert "'inner'" in str(refused('{"a": {"inner": 1, "inner": 2}}', "duplicate_key"))


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_naming_them(constant: str) -> None:
    assert constant in str(refused(f'{{"x": [{constant}]}}', "not_finite"))


def test_nesting_up_to_the_limit_parses_and_one_more_level_is_refused() -> None:
    depth = MAX_JSON_DEPTH
    assert loads("[" * depth + "]" * depth) == json.loads("[" * depth + "]" * depth)
    exc = refused("[" * (depth + 1) + "]" * (depth + 1), "too_deep")
    assert f"nested more than {depth} levels" in str(exc)
    refused('{"a":' * (depth + 1) + "1" + "}" * (depth + 1), "too_deep")


@pytest.mark.usefixtures("high_recursion_limit")
@pytest.mark.parametrize("depth", [1000, 500_000])
def test_deep_nesting_is_refused_before_the_recursive_decoder_runs(depth: int) -> None:
    # Without the depth check, json.loads overflows the C stack here and the process dies.
    refused("[" * depth + "]" * depth, "too_deep")
    refused(b'{"a":' + b"[" * depth + b"]" * depth + b"}", "too_deep")


def test_brackets_inside_strings_do_not_count_and_unpaired_ones_outside_do() -> None:
    deep_text = '["' + "[" * 50 + '\\"{{{{", "]]]"]'
    assert loads(deep_text) == json.loads(deep_text)
    assert nesting_exceeds(b"[[[")
    assert nesting_exceeds(b"]]")
    assert not nesting_exceeds(b'["]]]]"]')


@given(st.integers(min_value=0, max_value=12))
def test_nesting_exceeds_agrees_with_the_depth_it_is_given(depth: int) -> None:
    text = ("[" * depth + "]" * depth).encode()
    assert nesting_exceeds(text) == (depth > MAX_JSON_DEPTH)


@pytest.mark.usefixtures("no_int_digit_guard")
def test_an_integer_over_the_digit_limit_is_refused_even_without_pythons_own_guard() -> None:
    assert loads("[" + "9" * MAX_INTEGER_DIGITS + "]") == [int("9" * MAX_INTEGER_DIGITS)]
    assert loads("-" + "9" * MAX_INTEGER_DIGITS) == -int("9" * MAX_INTEGER_DIGITS)
    exc = refused("[" + "9" * (MAX_INTEGER_DIGITS + 1) + "]", "integer_too_long")
    assert f"{MAX_INTEGER_DIGITS + 1} digits" in str(exc)
    refused('{"n": ' + "7" * 1_000_000 + "}", "integer_too_long")


@pytest.mark.parametrize("text", ["", "{", '{"a": 1,}', "{'a': 1}", '{"a": 1} x', "[1e]"])
def test_what_is_not_json_is_refused(text: str) -> None:
    refused(text, "not_json")


def test_bytes_must_be_utf8_and_are_never_guessed_as_another_encoding() -> None:
    assert "byte 7" in str(refused(b'{"a": "\xff"}', "not_utf8"))
    refused('{"a": 1}'.encode("utf-16"), "not_utf8")


def test_a_lone_surrogate_from_an_outer_json_string_is_still_a_character() -> None:
    inner = json.loads('"[\\"\\ud800\\"]"')  # what a metadata value can decode to
    assert loads(inner) == ["\ud800"]
