"""Addresses people type: EIP-55 checksums wherever one comes in (settings, CLI, API query)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import eth_utils
import pytest
from apikit import Api, assert_error
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.cli import EXIT_USAGE, main
from registry.config import get_settings
from registry.core.address import InvalidAddress, parse_address, to_checksum_address
from registry.errors import ConfigurationError, InvalidInput

# The test vectors of EIP-55 (eips.ethereum.org/EIPS/eip-55): all caps, all lower, mixed.
EIP55_VECTORS = (
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
)
GOOD = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
# The same digits with one letter's case flipped: mixed case, checksum wrong.
BAD = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"


def flip_one_letter(address: str) -> str:
    i = next(i for i, c in enumerate(address) if i > 1 and c.isalpha())
    return address[:i] + address[i].swapcase() + address[i + 1 :]


@pytest.mark.parametrize("vector", EIP55_VECTORS)
def test_the_eip55_vectors_are_their_own_checksum_and_parse(vector: str) -> None:
    assert to_checksum_address(vector.lower()) == vector
    assert to_checksum_address(vector.upper().replace("0X", "0x")) == vector
    assert parse_address(vector) == vector


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=20, max_size=20))
def test_the_checksum_agrees_with_eth_utils_on_any_address(raw: bytes) -> None:
    expected = eth_utils.to_checksum_address("0x" + raw.hex())
    assert to_checksum_address("0x" + raw.hex()) == expected
    assert parse_address(expected) == expected


@pytest.mark.parametrize("vector", EIP55_VECTORS)
def test_addresses_without_a_checksum_are_taken_in_either_case(vector: str) -> None:
    assert parse_address(vector.lower()) == vector
    assert parse_address("0x" + vector[2:].upper()) == vector


@pytest.mark.parametrize("vector", EIP55_VECTORS[4:])
def test_a_mixed_case_address_with_a_wrong_checksum_is_refused_with_its_eip55_form(
    vector: str,
) -> None:
    wrong = flip_one_letter(vector)
    with pytest.raises(InvalidAddress) as info:
        parse_address(wrong, "--trusted")
    exc = info.value
    assert (exc.address, exc.source, exc.checksummed) == (wrong, "--trusted", vector)
    assert isinstance(exc, InvalidInput) and exc.code == "invalid_input"
    assert f"did you mean {vector}?" in exc.message
    assert "must match its EIP-55 checksum" in exc.message


@pytest.mark.parametrize(
    "text", ["bob", "0x" + "12" * 19, "0x" + "12" * 21, "12" * 20 + "0x", "0x" + "g" * 40, ""]
)
def test_text_that_is_no_address_is_refused_without_a_suggestion(text: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        parse_address(text, "registrant")
    assert info.value.checksummed is None
    assert "0x followed by 40 hex digits" in info.value.message


# --- settings ---------------------------------------------------------------------------------


def test_settings_refuse_a_wrong_checksum_in_trusted_registrants_and_the_contract() -> None:
    with pytest.raises(ConfigurationError) as info:
        get_settings(trusted_registrants=f"{GOOD.lower()},{BAD}")
    assert "REGISTRY_TRUSTED_REGISTRANTS" in info.value.message and GOOD in info.value.message
    with pytest.raises(ConfigurationError) as info:
        get_settings(contract_address=BAD)
    assert "REGISTRY_CONTRACT_ADDRESS" in info.value.message and GOOD in info.value.message


def test_settings_take_checksummed_lower_and_upper_case_addresses() -> None:
    upper = "0x" + GOOD[2:].upper()
    settings = get_settings(trusted_registrants=f"{GOOD}, {GOOD.lower()},{upper}")
    assert settings.trusted_registrants == [GOOD.lower()] * 3
    assert get_settings(contract_address=upper).contract_address == upper


# --- the CLI ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "README.md", "--trusted", BAD],
        ["roles", "show", "registrar", BAD],
        ["roles", "grant", "registrar", BAD],
        ["admin", "transfer", BAD],
        ["deploy", "--admin", BAD],
    ],
)
def test_cli_address_arguments_with_a_wrong_checksum_are_refused_before_the_chain(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An endpoint nothing listens on: a refusal that came from the chain would say so instead.
    monkeypatch.setenv("REGISTRY_RPC_URL", "http://127.0.0.1:9")
    code = main(argv)
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert f"did you mean {GOOD}?" in err


# --- the API ----------------------------------------------------------------------------------


def test_the_registrant_filter_refuses_a_wrong_checksum_with_its_eip55_form(
    make_api: Callable[..., Api],
) -> None:
    api = make_api()
    error = assert_error(api.http.get("/models", params={"registrant": BAD}), 400, "invalid_input")
    assert error["details"] == {"address": BAD, "source": "registrant", "checksummed": GOOD}


def test_the_registrant_filter_takes_any_case_of_a_real_registrant(api: Any) -> None:
    registrant = api.client.account.address
    for text in (registrant, registrant.lower(), "0x" + registrant[2:].upper()):
        response = api.http.get("/models", params={"registrant": text})
        assert response.status_code == 200, response.text
