"""Solidity's ``abi.encode`` for static types, without eth_abi: what a Merkle leaf commits to.

A batch Merkle leaf is the hash of ``abi.encode(values...)`` (registry.core.merkle_batch), and the
domain layer imports no eth_abi, so the few types a leaf needs are encoded here: ``bytes1`` ..
``bytes32`` (right-padded), ``uint8`` .. ``uint256`` and ``int8`` .. ``int256`` (big-endian, two's
complement), ``address`` (left-padded) and ``bool``, each one 32-byte word. Dynamic types
(``string``, ``bytes``, arrays, tuples) are refused: a leaf that needs one commits to its hash in a
``bytes32``.

Values are checked strictly and normalised to one Python form each: ``bytes`` for ``bytesN``,
``int`` for integers, EIP-55 text for addresses (a mixed-case one must pass its checksum, as
everywhere in the registry), ``bool`` for booleans. Where
OpenZeppelin's encoder pads a short ``bytes32`` or address with zeros, this module refuses it: a
truncated digest is a mistake, never a value to commit to.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from registry.core.address import parse_address, to_checksum_address
from registry.errors import InvalidInput

__all__ = [
    "AbiType",
    "AbiValue",
    "abi_encode",
    "encode",
    "json_value",
    "normalise",
    "parse_types",
    "shown",
]

# One value, normalised: bytesN -> bytes, (u)intN -> int, address -> EIP-55 "0x" text.
AbiValue = bytes | int | bool | str

_WORD = 32
_INT_TYPE = re.compile(r"(u?)int([1-9][0-9]{0,2})?")
_BYTES_TYPE = re.compile(r"bytes([1-9][0-9]?)")
_DECIMAL = re.compile(r"-?[0-9]{1,80}")
_HEX_NUMBER = re.compile(r"0x[0-9a-fA-F]{1,64}")
HEX_BYTES = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


def shown(value: object) -> str:
    """``repr(value)``, cut short: an error names the value without repeating a megabyte of it."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass(frozen=True, slots=True)
class AbiType:
    """A static ABI type: ``kind`` is uint, int, bytes, address or bool; ``size`` is the width in
    bits of an integer or in bytes of a ``bytesN``."""

    name: str
    kind: str
    size: int

    @classmethod
    def parse(cls, name: object) -> AbiType:
        if not isinstance(name, str):
            raise InvalidInput(
                f"ABI type {shown(name)} is not a type name; give Solidity type names such as "
                "'bytes32' or 'uint256'",
                type=shown(name),
            )
        number = _INT_TYPE.fullmatch(name)
        if number:
            bits = int(number.group(2) or 256)
            if bits <= 256 and bits % 8 == 0:
                return cls(name, "uint" if number.group(1) else "int", bits)
        fixed = _BYTES_TYPE.fullmatch(name)
        if fixed and int(fixed.group(1)) <= _WORD:
            return cls(name, "bytes", int(fixed.group(1)))
        if name in ("address", "bool"):
            return cls(name, name, 0)
        raise InvalidInput(
            f"ABI type {shown(name)} is not supported: only static types are (bytes1..bytes32, "
            "uint8..uint256, int8..int256, address, bool); commit to a dynamic value (string, "
            "bytes, array) through its keccak256 in a bytes32",
            type=name,
        )

    def normalise(self, value: object) -> AbiValue:
        """``value`` in its one Python form, or ``InvalidInput`` naming it and this type."""
        if self.kind in ("uint", "int"):
            return self._integer(value)
        if self.kind == "bytes":
            return self._bytes(value)
        if self.kind == "address":
            if isinstance(value, str):
                return parse_address(value, f"{self.name} value")
            if isinstance(value, bytes | bytearray) and len(value) == 20:
                return to_checksum_address("0x" + bytes(value).hex())
            raise self._misfit(value, "expected '0x' and 40 hex digits")
        # bool: true/false, or the strings OpenZeppelin's encoder also takes.
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise self._misfit(value, "expected true or false")

    def word(self, value: AbiValue) -> bytes:
        """The 32-byte ABI word of a value ``normalise`` returned."""
        if isinstance(value, bytes):
            return value.ljust(_WORD, b"\0")
        if isinstance(value, str):
            return bytes.fromhex(value[2:]).rjust(_WORD, b"\0")
        # int, uint and bool (a bool is an int); the modulus is two's complement for negatives.
        return (value % (1 << 256)).to_bytes(_WORD, "big")

    def _misfit(self, value: object, problem: str) -> InvalidInput:
        return InvalidInput(
            f"value {shown(value)} does not fit ABI type {self.name}: {problem}",
            value=shown(value),
            type=self.name,
            problem=problem,
        )

    def _bytes(self, value: object) -> bytes:
        if isinstance(value, bytes | bytearray):
            raw = bytes(value)
        elif isinstance(value, str) and HEX_BYTES.fullmatch(value):
            raw = bytes.fromhex(value[2:])
        else:
            raise self._misfit(
                value, f"expected {self.size} bytes or '0x' and {2 * self.size} hex digits"
            )
        if len(raw) != self.size:
            raise self._misfit(value, f"{len(raw)} bytes where the type holds exactly {self.size}")
        return raw

    def _integer(self, value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and _DECIMAL.fullmatch(value):
            number = int(value)
        elif isinstance(value, str) and _HEX_NUMBER.fullmatch(value):
            number = int(value, 16)
        else:
            raise self._misfit(value, "expected an integer, its decimal text or '0x' hex")
        if self.kind == "uint":
            low, high = 0, (1 << self.size) - 1
        else:
            low, high = -(1 << (self.size - 1)), (1 << (self.size - 1)) - 1
        if not low <= number <= high:
            raise self._misfit(value, f"out of range {low}..{high}")
        return number


def parse_types(names: object) -> tuple[AbiType, ...]:
    """A list of Solidity type names (a leaf encoding) as ``AbiType``s; bad input named."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise InvalidInput(
            f"leaf encoding {shown(names)} is not a list of type names; "
            "give one Solidity type per value, e.g. ['bytes32', 'uint16']",
            leaf_encoding=shown(names),
        )
    if not names:
        raise InvalidInput(
            "the leaf encoding is empty; give one Solidity type per value", leaf_encoding=[]
        )
    return tuple(AbiType.parse(name) for name in names)


def normalise(types: tuple[AbiType, ...], values: object) -> tuple[AbiValue, ...]:
    """``values`` (one per type) in their Python forms; a wrong count or a misfit is bad input."""
    described = ", ".join(abi.name for abi in types)
    if isinstance(values, str | bytes | bytearray) or not isinstance(values, Sequence):
        raise InvalidInput(
            f"leaf {shown(values)} is not a list of values; give one value per type ({described})",
            leaf=shown(values),
        )
    if len(values) != len(types):
        raise InvalidInput(
            f"leaf {shown(values)} has {len(values)} values where the encoding ({described}) has "
            f"{len(types)}",
            leaf=shown(values),
            expected=len(types),
        )
    return tuple(abi.normalise(value) for abi, value in zip(types, values, strict=True))


def encode(types: tuple[AbiType, ...], values: tuple[AbiValue, ...]) -> bytes:
    """``abi.encode`` of values ``normalise`` returned for the same types."""
    return b"".join(abi.word(value) for abi, value in zip(types, values, strict=True))


def abi_encode(type_names: Sequence[str], values: Sequence[object]) -> bytes:
    """Solidity's ``abi.encode(values...)`` for static types: one 32-byte word per value."""
    types = parse_types(type_names)
    return encode(types, normalise(types, values))


def json_value(value: AbiValue) -> bool | str:
    """A normalised value as OpenZeppelin's dumps write it: integers as decimal text, bytes as
    ``0x`` hex, addresses and booleans as they are."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
