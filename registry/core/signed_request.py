"""The signed registration request: the file an offline sign-off key writes and anyone submits.

A hospital may keep its registrar key on a machine that never touches a network. That key signs
an EIP-712 ``Registration`` (the record's fields, the registrar, a nonce and a deadline) for one
chain and one contract; whoever holds the file (IT's relayer, the clinic service's
``POST /models/relay``) sends it with ``registerBySig`` and pays the gas, and the record lands
with the registrar as its registrant. This module is the file's format, parsed strictly before
anything else looks at it; hashing, signing and the chain's checks live in
``registry.chain.delegation``, which needs keccak and secp256k1.

The file is canonical JSON (sorted keys, no spaces, UTF-8) holding the EIP-712 typed data in the
shape ``eth_signTypedData_v4`` takes, so any wallet or library can check the signature::

    kind, version        "medical-model-registry/signed-registration", 1
    typed_data           types, primaryType "Registration", domain (name "ModelRegistry",
                         version "1", chainId, verifyingContract), message (every field of
                         Registration: bytes32 as 0x + 64 hex, the registrar EIP-55, numbers as
                         0x hex quantities, since a uint256 nonce does not fit a JSON number)
    signature            0x hex: 65 bytes (r, s, v) from a key, or what an ERC-1271 wallet takes
    unsigned             informative, not signed: checkpoint_file (the file's name) and card (the
                         model card as a JSON object); a reader checks them against the message

A nonce is ``lane << 64 | sequence`` (the contract's ``nonces(registrar, lane)``): requests of
different lanes can be signed ahead and sent in any order, those of one lane in order.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelformat.strictjson import StrictJSONError, loads
from registry.core.address import InvalidAddress, parse_address
from registry.core.digest import ZERO, Digest
from registry.core.records import MAX_ACCURACY_BPS, RegisterRequest
from registry.errors import InvalidDigest, InvalidInput

KIND = "medical-model-registry/signed-registration"
VERSION = 1
DOMAIN_NAME = "ModelRegistry"
DOMAIN_VERSION = "1"
PRIMARY_TYPE = "Registration"
# The card travels inside the file: its own limit (registry.cards) plus room for the rest.
MAX_REQUEST_BYTES = (1 << 20) + (64 << 10)
# An ERC-1271 wallet may take a longer signature than 65 bytes (several owners' signatures), but
# not without bound: this is what one request may carry.
MAX_SIGNATURE_BYTES = 4096
LANE_BITS, SEQUENCE_BITS = 192, 64
UINT256_MAX = (1 << 256) - 1

DOMAIN_FIELDS = (
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
)
REGISTRATION_FIELDS = (
    ("digest", "bytes32"),
    ("accuracyBps", "uint16"),
    ("testSetDigest", "bytes32"),
    ("cardDigest", "bytes32"),
    ("parent", "bytes32"),
    ("registrar", "address"),
    ("nonce", "uint256"),
    ("deadline", "uint256"),
)
TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [{"name": n, "type": t} for n, t in DOMAIN_FIELDS],
    PRIMARY_TYPE: [{"name": n, "type": t} for n, t in REGISTRATION_FIELDS],
}

_BYTES32 = re.compile(r"0x[0-9a-fA-F]{64}")
_QUANTITY = re.compile(r"0x(?:0|[1-9a-f][0-9a-f]*)")
_HEX_BYTES = re.compile(r"0x(?:[0-9a-fA-F]{2})+")
_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_UNITS = (7 * 86_400, 86_400, 3_600, 60, 1)


class InvalidRegistrationRequest(InvalidInput):
    """A signed registration request that is not one: ``field`` names where (``typed_data.
    message.nonce``, ``signature``, ``<file>``), ``problem`` what is wrong with it. Nothing
    reached the chain."""

    code = "invalid_registration_request"

    def __init__(self, field: str, problem: str, source: str = "the request") -> None:
        super().__init__(
            f"{source} is not a usable signed registration: {field} {problem}; sign it again "
            "with `registry sign-registration`",
            field=field,
            problem=problem,
        )
        self.field, self.problem = field, problem


def compose_nonce(lane: int, sequence: int) -> int:
    """The nonce of ``sequence`` in ``lane`` (``lane << 64 | sequence``)."""
    if not 0 <= lane < 1 << LANE_BITS:
        raise InvalidInput(
            f"lane {lane} is out of range: a lane is 0 to 2**192 - 1", lane=lane, field="lane"
        )
    if not 0 <= sequence < 1 << SEQUENCE_BITS:
        raise InvalidInput(
            f"sequence {sequence} is out of range: 0 to 2**64 - 1",
            sequence=sequence,
            field="sequence",
        )
    return lane << SEQUENCE_BITS | sequence


def split_nonce(nonce: int) -> tuple[int, int]:
    """(lane, sequence) of a nonce."""
    return nonce >> SEQUENCE_BITS, nonce & ((1 << SEQUENCE_BITS) - 1)


def parse_deadline(text: str, now: int) -> int:
    """A deadline as a Unix time: ISO 8601 with its time zone (``2026-12-01T18:00:00Z``) or a
    duration from ``now`` (``7d``, ``12h``, ``1d12h``, ``90m``, ``3600s``); it must lie ahead."""
    value = text.strip()
    match = _DURATION.fullmatch(value)
    if value and match and any(match.groups()):
        seconds = sum(
            int(g or 0) * unit for g, unit in zip(match.groups(), _DURATION_UNITS, strict=True)
        )
        deadline = now + seconds
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"--deadline {text!r} is neither an ISO 8601 time (2026-12-01T18:00:00Z) nor a "
                "duration (7d, 12h, 1d12h, 90m, 3600s)",
                deadline=text,
            ) from None
        if moment.tzinfo is None:
            raise InvalidInput(
                f"--deadline {text!r} has no time zone, so it names no single moment; add Z "
                "(UTC) or an offset such as +01:00",
                deadline=text,
            )
        deadline = int(moment.timestamp())
    if deadline <= now:
        raise InvalidInput(
            f"--deadline {text!r} is {_iso(deadline)}, not after now ({_iso(now)}); a request "
            "past its deadline can never be submitted",
            deadline=deadline,
            now=now,
        )
    return deadline


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class SigningDomain:
    """The EIP-712 domain a request is signed for: one chain, one registry contract."""

    chain_id: int
    verifying_contract: str  # EIP-55
    name: str = DOMAIN_NAME
    version: str = DOMAIN_VERSION

    def __post_init__(self) -> None:
        # One spelling (EIP-55), so that two domains compare equal when they are the same.
        address = parse_address(self.verifying_contract, "verifyingContract")
        object.__setattr__(self, "verifying_contract", address)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }


@dataclass(frozen=True, slots=True)
class Registration:
    """The signed message: the record's fields, who registers it, its nonce and deadline."""

    digest: Digest
    accuracy_bps: int
    test_set_digest: Digest
    card_digest: Digest
    parent: Digest | None
    registrar: str  # EIP-55
    nonce: int
    deadline: int  # Unix time, compared with the block's timestamp

    def __post_init__(self) -> None:
        object.__setattr__(self, "registrar", parse_address(self.registrar, "registrar"))

    @classmethod
    def of(
        cls, request: RegisterRequest, registrar: str, nonce: int, deadline: int
    ) -> Registration:
        """The message that registers ``request``'s record on behalf of ``registrar``."""
        return cls(
            digest=request.digest,
            accuracy_bps=request.accuracy_bps,
            test_set_digest=request.test_set_digest,
            card_digest=request.card_digest,
            parent=request.parent,
            registrar=registrar,
            nonce=nonce,
            deadline=deadline,
        )

    @property
    def lane(self) -> int:
        return split_nonce(self.nonce)[0]

    @property
    def sequence(self) -> int:
        return split_nonce(self.nonce)[1]

    def to_json(self) -> dict[str, Any]:
        """The typed-data message, every field in hex."""
        return {
            "digest": "0x" + self.digest.hex,
            "accuracyBps": hex(self.accuracy_bps),
            "testSetDigest": "0x" + self.test_set_digest.hex,
            "cardDigest": "0x" + self.card_digest.hex,
            "parent": "0x" + (self.parent or ZERO).hex,
            "registrar": self.registrar,
            "nonce": hex(self.nonce),
            "deadline": hex(self.deadline),
        }

    def leaf(self) -> tuple[bytes, int, bytes, bytes, bytes]:
        """The record as the contract's ``Leaf`` struct takes it."""
        return (
            self.digest.raw,
            self.accuracy_bps,
            self.test_set_digest.raw,
            self.card_digest.raw,
            (self.parent or ZERO).raw,
        )


@dataclass(frozen=True, slots=True)
class SignedRegistration:
    """A parsed request file. ``checkpoint_file`` and ``card`` are the unsigned extras."""

    domain: SigningDomain
    registration: Registration
    signature: bytes
    checkpoint_file: str | None = None
    card: dict[str, Any] | None = None

    def typed_data(self) -> dict[str, Any]:
        """The EIP-712 typed data as ``eth_signTypedData_v4`` takes it."""
        return typed_data(self.domain, self.registration)

    def to_json(self) -> bytes:
        """The file's canonical bytes (sorted keys, no spaces, UTF-8, a final newline)."""
        unsigned: dict[str, Any] = {"checkpoint_file": self.checkpoint_file, "card": self.card}
        document = {
            "kind": KIND,
            "version": VERSION,
            "typed_data": self.typed_data(),
            "signature": "0x" + self.signature.hex(),
            "unsigned": unsigned,
        }
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8") + b"\n"

    @classmethod
    def parse(cls, data: bytes, source: str = "the request") -> SignedRegistration:
        """The request in ``data``, every field checked; ``InvalidRegistrationRequest`` names
        the first field that is wrong (``source`` says which file or body it came from)."""
        return _Parser(source).request(data)


def typed_data(domain: SigningDomain, registration: Registration) -> dict[str, Any]:
    return {
        "types": TYPES,
        "primaryType": PRIMARY_TYPE,
        "domain": domain.to_json(),
        "message": registration.to_json(),
    }


class _Parser:
    """Reads a request document field by field, naming the path of the first bad one."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, problem: str) -> InvalidRegistrationRequest:
        return InvalidRegistrationRequest(field, problem, self.source)

    def request(self, data: bytes) -> SignedRegistration:
        if len(data) > MAX_REQUEST_BYTES:
            raise self.fail(
                "<file>", f"is {len(data)} bytes, over the limit of {MAX_REQUEST_BYTES}"
            )
        try:
            document = loads(data)
        except StrictJSONError as exc:
            raise self.fail("<file>", str(exc)) from None
        top = self.mapping(document, "<file>", {"kind", "version", "typed_data", "signature"})
        extra = sorted(set(top) - {"kind", "version", "typed_data", "signature", "unsigned"})
        if extra:
            raise self.fail("<file>", f"has fields this format does not have: {', '.join(extra)}")
        if top.get("kind") != KIND:
            raise self.fail("kind", f"is {_shown(top.get('kind'))}, not {KIND!r}")
        if top.get("version") != VERSION or isinstance(top.get("version"), bool):
            raise self.fail("version", f"is {_shown(top.get('version'))}; this reads {VERSION}")
        typed = self.mapping(
            top["typed_data"], "typed_data", {"types", "primaryType", "domain", "message"}
        )
        if typed["types"] != TYPES:
            raise self.fail(
                "typed_data.types",
                "are not the registry's EIP712Domain(string name,string version,uint256 chainId,"
                "address verifyingContract) and Registration("
                + ",".join(f"{t} {n}" for n, t in REGISTRATION_FIELDS)
                + ") in that order",
            )
        if typed["primaryType"] != PRIMARY_TYPE:
            raise self.fail(
                "typed_data.primaryType", f"is {_shown(typed['primaryType'])}, not 'Registration'"
            )
        unsigned = top.get("unsigned")
        checkpoint_file, card = self.unsigned(unsigned) if unsigned is not None else (None, None)
        return SignedRegistration(
            domain=self.domain(typed["domain"]),
            registration=self.message(typed["message"]),
            signature=self.signature(top["signature"]),
            checkpoint_file=checkpoint_file,
            card=card,
        )

    def mapping(self, value: object, field: str, required: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(field, f"must be a JSON object, not {_type(value)}")
        missing = sorted(required - set(value))
        if missing:
            raise self.fail(field, f"lacks {', '.join(missing)}")
        return value

    def exact(self, value: object, field: str, keys: tuple[str, ...]) -> dict[str, Any]:
        found = self.mapping(value, field, set(keys))
        extra = sorted(set(found) - set(keys))
        if extra:
            raise self.fail(field, f"has fields no signature covers: {', '.join(extra)}")
        return found

    def domain(self, value: object) -> SigningDomain:
        found = self.exact(value, "typed_data.domain", tuple(n for n, _ in DOMAIN_FIELDS))
        for key, wanted in (("name", DOMAIN_NAME), ("version", DOMAIN_VERSION)):
            if found[key] != wanted:
                raise self.fail(
                    f"typed_data.domain.{key}",
                    f"is {_shown(found[key])}; the registry's domain has {key} {wanted!r}",
                )
        chain_id = found["chainId"]
        if isinstance(chain_id, str):
            chain_id = self.quantity(chain_id, "typed_data.domain.chainId", UINT256_MAX)
        if not isinstance(chain_id, int) or isinstance(chain_id, bool) or chain_id <= 0:
            raise self.fail("typed_data.domain.chainId", f"is {_shown(found['chainId'])}")
        return SigningDomain(
            chain_id=chain_id,
            verifying_contract=self.address(
                found["verifyingContract"], "typed_data.domain.verifyingContract"
            ),
        )

    def message(self, value: object) -> Registration:
        where = "typed_data.message"
        found = self.exact(value, where, tuple(n for n, _ in REGISTRATION_FIELDS))
        digest = self.bytes32(found["digest"], f"{where}.digest")
        if digest.is_zero:
            raise self.fail(f"{where}.digest", "is zero, which identifies no checkpoint")
        accuracy = self.quantity(found["accuracyBps"], f"{where}.accuracyBps", MAX_ACCURACY_BPS)
        test_set = self.bytes32(found["testSetDigest"], f"{where}.testSetDigest")
        card = self.bytes32(found["cardDigest"], f"{where}.cardDigest")
        for name, d in (("testSetDigest", test_set), ("cardDigest", card)):
            if d.is_zero:
                raise self.fail(f"{where}.{name}", "is zero; the record needs it")
        parent = self.bytes32(found["parent"], f"{where}.parent")
        return Registration(
            digest=digest,
            accuracy_bps=accuracy,
            test_set_digest=test_set,
            card_digest=card,
            parent=None if parent.is_zero else parent,
            registrar=self.address(found["registrar"], f"{where}.registrar"),
            nonce=self.quantity(found["nonce"], f"{where}.nonce", UINT256_MAX),
            deadline=self.quantity(found["deadline"], f"{where}.deadline", UINT256_MAX),
        )

    def signature(self, value: object) -> bytes:
        if not isinstance(value, str) or not _HEX_BYTES.fullmatch(value):
            raise self.fail("signature", f"is {_shown(value)}, not 0x followed by hex bytes")
        raw = bytes.fromhex(value[2:])
        if len(raw) > MAX_SIGNATURE_BYTES:
            raise self.fail("signature", f"is {len(raw)} bytes, over {MAX_SIGNATURE_BYTES}")
        return raw

    def unsigned(self, value: object) -> tuple[str | None, dict[str, Any] | None]:
        found = self.exact(value, "unsigned", ("checkpoint_file", "card"))
        name, card = found["checkpoint_file"], found["card"]
        if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 255):
            raise self.fail("unsigned.checkpoint_file", "must be a file name of 1-255 characters")
        if card is not None and not isinstance(card, dict):
            raise self.fail("unsigned.card", f"must be the model card's object, not {_type(card)}")
        return name, card

    def bytes32(self, value: object, field: str) -> Digest:
        if not isinstance(value, str) or not _BYTES32.fullmatch(value):
            raise self.fail(field, f"is {_shown(value)}, not 0x followed by 64 hex digits")
        try:
            return Digest.parse(value)
        except InvalidDigest as exc:  # unreachable after the pattern; the parser has the word
            raise self.fail(field, exc.problem) from None

    def quantity(self, value: object, field: str, limit: int) -> int:
        if not isinstance(value, str) or not _QUANTITY.fullmatch(value) or len(value) > 66:
            raise self.fail(
                field,
                f"is {_shown(value)}, not a hex quantity (0x, lower-case hex, no leading zeros)",
            )
        number = int(value, 16)
        if number > limit:
            raise self.fail(field, f"is {number}, over its limit of {limit}")
        return number

    def address(self, value: object, field: str) -> str:
        try:
            return parse_address(value, field)  # type: ignore[arg-type]
        except InvalidAddress as exc:
            raise self.fail(field, f"is not a usable address ({exc.message})") from None


def _shown(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _type(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )
