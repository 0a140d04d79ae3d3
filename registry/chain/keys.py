"""The locally held key that signs transactions: a hex key or an encrypted keystore file.

The node never signs for us (no unlocked accounts outside tests), and a key is never printed:
errors name where the key came from, not what it is.
"""

from __future__ import annotations

import json
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from registry.config import Settings
from registry.errors import ConfigurationError


def account_from_hex(key: str, source: str = "REGISTRY_PRIVATE_KEY") -> LocalAccount:
    text = key.strip().removeprefix("0x")
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ConfigurationError(
            f"{source} is not a private key: expected 64 hex characters (optionally 0x-prefixed)"
        )
    try:
        account: LocalAccount = Account.from_key(bytes.fromhex(text))
    except ValueError as exc:
        raise ConfigurationError(f"{source} is not a valid secp256k1 private key") from exc
    return account


def account_from_keystore(path: Path, password: str) -> LocalAccount:
    try:
        encrypted = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"keystore file {path} does not exist", path=str(path)) from exc
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"keystore file {path} is not readable JSON ({exc})") from exc
    try:
        key = Account.decrypt(encrypted, password)
    except ValueError as exc:
        raise ConfigurationError(
            f"cannot decrypt keystore {path}: wrong REGISTRY_KEYSTORE_PASSWORD or corrupt file",
            path=str(path),
        ) from exc
    account: LocalAccount = Account.from_key(key)
    return account


def load_account(settings: Settings) -> LocalAccount | None:
    """The signing account from settings, or ``None`` when the caller only reads."""
    if settings.private_key is not None:
        return account_from_hex(settings.private_key.get_secret_value())
    if settings.keystore is not None:
        if settings.keystore_password is None:
            raise ConfigurationError(
                f"keystore {settings.keystore} needs REGISTRY_KEYSTORE_PASSWORD to be set"
            )
        return account_from_keystore(
            settings.keystore, settings.keystore_password.get_secret_value()
        )
    return None
