"""Ethereum account addresses as people type them, checked wherever one comes in as text.

Configuration (``REGISTRY_TRUSTED_REGISTRANTS``, ``REGISTRY_CONTRACT_ADDRESS``), CLI arguments and
API queries all take addresses from people; ``parse_address`` keeps them agreeing. An address is
``0x`` and 40 hex digits. EIP-55 writes a checksum into the case of its letters: an all-lowercase
or all-uppercase address carries none and is taken as it is, but a mixed-case one claims to be
checksummed and must match exactly. One that does not is a mistyped or altered address, and a
clinic's trusted registrant that silently names another account is what the check is for.

The checksum is keccak-256 from ``eth_hash`` (a base dependency, pycryptodome backend), not
``eth_utils``: ``registry.core`` talks to no chain library.
"""

from __future__ import annotations

import re

from eth_hash.auto import keccak

from registry.errors import InvalidInput

__all__ = ["ADDRESS", "InvalidAddress", "parse_address", "to_checksum_address"]

# Use with fullmatch(): "0x" followed by exactly 40 hex digits, upper or lower case.
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_SHOWN = 60  # characters of a refused value that a message repeats


class InvalidAddress(InvalidInput, ValueError):
    """Text given as an account address that is not one, or whose EIP-55 checksum fails.

    ``address`` is the text (cut to 60 characters), ``source`` where it came from (``--trusted``,
    ``registrant``), ``checksummed`` the EIP-55 form of its 40 hex digits, or None if it has none.
    A ``ValueError`` too, so settings validators raise it as it is.
    """

    def __init__(self, address: str, source: str, checksummed: str | None) -> None:
        shown = address[:_SHOWN]
        if checksummed is None:
            message = f"{source} {shown!r} is not an address: give 0x followed by 40 hex digits"
        else:
            message = (
                f"{source} {shown!r} fails its EIP-55 checksum: did you mean {checksummed}? a "
                "mixed-case address must match its EIP-55 checksum; a mistyped digit breaks it "
                "too, so check the digits against where the address came from"
            )
        super().__init__(message, address=shown, source=source, checksummed=checksummed)
        self.address, self.source, self.checksummed = shown, source, checksummed


def to_checksum_address(address: str) -> str:
    """The EIP-55 form of ``0x`` + 40 hex digits: a letter is upper case where the matching
    hex digit of keccak-256(the 40 digits in lower case, as ASCII) is 8 or more."""
    digits = address[2:].lower()
    hashed = keccak(digits.encode("ascii")).hex()[:40]
    return "0x" + "".join(
        d.upper() if int(h, 16) >= 8 else d for d, h in zip(digits, hashed, strict=True)
    )


def parse_address(text: str, source: str = "address") -> str:
    """``text`` as an address in its EIP-55 form; ``InvalidAddress`` names ``source`` if it is not
    one, or if it is mixed case and its checksum fails."""
    if not isinstance(text, str) or not ADDRESS.fullmatch(text):
        raise InvalidAddress(str(text), source, None)
    checksummed = to_checksum_address(text)
    digits = text[2:]
    if digits not in (digits.lower(), digits.upper()) and text != checksummed:
        raise InvalidAddress(text, source, checksummed)
    return checksummed
