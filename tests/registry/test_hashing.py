import hashlib
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.core.digest import (
    ZERO,
    Digest,
    digest_bytes,
    digest_file,
    digest_stream,
    parse_optional,
)
from registry.errors import InvalidDigest

HEX = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize(
    "text",
    [
        HEX,
        HEX.upper(),
        "0x" + HEX,
        "0X" + HEX.upper(),
        "sha256:" + HEX,
        "SHA256:" + HEX,
        f"  {HEX}\n",
    ],
)
def test_parse_accepts_the_three_spellings_and_normalises_them(text: str) -> None:
    digest = Digest.parse(text)
    assert digest.hex == HEX
    assert str(digest) == "sha256:" + HEX


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (HEX[:-1], "63 hex characters, need 64"),
        (HEX + "0", "65 hex characters, need 64"),
        ("", "0 hex characters, need 64"),
        ("g" + HEX[1:], "'g' is not a hex character"),
        ("md5:" + HEX, "algorithm 'md5' is not sha256"),
        ("sha512:" + HEX, "algorithm 'sha512' is not sha256"),
        ("0x0x" + HEX, "'x' is not a hex character"),
        (HEX[:32] + " " + HEX[32:], "' ' is not a hex character"),
    ],
)
def test_parse_refuses_malformed_digests_and_names_the_value(text: str, problem: str) -> None:
    with pytest.raises(InvalidDigest) as info:
        Digest.parse(text)
    assert info.value.problem == problem
    assert repr(text)[:40] in str(info.value) or len(repr(text)) > 100


def test_parse_refuses_non_text() -> None:
    with pytest.raises(InvalidDigest, match="expected text, got int"):
        Digest.parse(12)


def test_parse_optional_treats_empty_and_zero_as_absent() -> None:
    assert parse_optional(None) is None
    assert parse_optional("") is None
    assert parse_optional("0x" + "0" * 64) is None
    assert parse_optional(HEX) == Digest(HEX)


def test_raw_round_trip_and_zero() -> None:
    assert Digest.from_bytes(Digest(HEX).raw) == Digest(HEX)
    assert ZERO.is_zero and not Digest(HEX).is_zero
    with pytest.raises(InvalidDigest):
        Digest.from_bytes(b"\x00" * 31)


@given(
    st.binary(min_size=32, max_size=32),
    st.sampled_from(["", "0x", "sha256:", "SHA256:"]),
    st.booleans(),
)
def test_any_digest_parses_back_to_itself_in_every_spelling(
    raw: bytes, prefix: str, upper: bool
) -> None:
    text = raw.hex().upper() if upper else raw.hex()
    assert Digest.parse(prefix + text).raw == raw


@given(st.text(max_size=80))
def test_arbitrary_text_parses_or_raises_invalid_digest_only(text: str) -> None:
    try:
        digest = Digest.parse(text)
    except InvalidDigest:
        return
    assert len(digest.hex) == 64


@given(st.binary(max_size=5000), st.integers(min_value=1, max_value=4096))
def test_streaming_digest_equals_hashlib_for_any_chunking(data: bytes, chunk: int) -> None:
    assert digest_stream(io.BytesIO(data), chunk_size=chunk).hex == hashlib.sha256(data).hexdigest()


def test_file_digest_equals_bytes_digest(tmp_path) -> None:
    path = tmp_path / "model.safetensors"
    data = bytes(range(256)) * 9000  # spans several read chunks
    path.write_bytes(data)
    assert digest_file(path) == digest_bytes(data)
    assert digest_file(path).hex == hashlib.sha256(data).hexdigest()
