import json
from pathlib import Path

import pytest
from eth_account import Account

from registry.chain.keys import account_from_hex, load_account
from registry.config import get_settings
from registry.errors import ConfigurationError

KEY = "0x" + "4c" * 32


def test_hex_key_loads_with_or_without_prefix() -> None:
    assert account_from_hex(KEY).address == account_from_hex(KEY[2:]).address


@pytest.mark.parametrize("bad", ["", "0x1234", "zz" * 32, "0x" + "00" * 32])
def test_bad_hex_key_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        account_from_hex(bad)
    assert "REGISTRY_PRIVATE_KEY" in info.value.message
    if len(bad) > 8:
        assert bad not in info.value.message


def test_encrypted_keystore_signs_as_its_account(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(Account.encrypt(KEY, "correct horse", iterations=2)))
    settings = get_settings(keystore=path, keystore_password="correct horse", data_dir=tmp_path)
    account = load_account(settings)
    assert account is not None
    assert account.address == Account.from_key(KEY).address


def test_keystore_with_wrong_password_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(Account.encrypt(KEY, "right", iterations=2)))
    settings = get_settings(keystore=path, keystore_password="wrong", data_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="wrong REGISTRY_KEYSTORE_PASSWORD"):
        load_account(settings)


def test_keystore_without_password_is_a_configuration_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("REGISTRY_KEYSTORE_PASSWORD", raising=False)
    monkeypatch.delenv("REGISTRY_PRIVATE_KEY", raising=False)
    settings = get_settings(keystore=tmp_path / "k.json", data_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="needs REGISTRY_KEYSTORE_PASSWORD"):
        load_account(settings)


def test_no_key_configured_means_read_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("REGISTRY_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("REGISTRY_KEYSTORE", raising=False)
    assert load_account(get_settings(data_dir=tmp_path)) is None


def test_invalid_settings_name_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("REGISTRY_RPC_URL", "ftp://node")
    with pytest.raises(ConfigurationError, match="REGISTRY_RPC_URL"):
        get_settings()
