"""Delegated registration on chain: EIP-712 hashes and signatures, and the sending of a request.

A registrar's key signs a ``Registration`` offline (``registry.core.signed_request`` is the
file); any account sends it with ``registerBySig`` and pays the gas. Before a request costs
anything, ``preflight`` asks the chain what the contract would say, in the order a person can act
on: signed for this chain and this contract; before its deadline by the latest block's time; the
registrar's next nonce in its lane (a used one is a replay, a cancelled one is named as such,
either way for good); the signature the registrar's (recovered here for a key; a contract
registrar's ERC-1271 wallet decides, in the simulation); the registrar holds the Registrar role.
Then an ``eth_call`` simulates the very transaction, so whatever else the contract refuses
(already registered, an unknown parent) is refused without gas; only then is it sent.

The hashes are computed here, field by field as EIP-712 defines them, rather than through a
library's JSON encoder: the contract computes the same words, and the tests hold both against
``eth_account``'s ``encode_typed_data`` and the contract itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coincurve import PublicKey
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from eth_typing import Hash32
from eth_utils import to_checksum_address

from registry.chain.abi import address_topic, to_bytes, to_hex
from registry.chain.client import RegistryClient
from registry.chain.reverts import (
    ExpiredSignature,
    InvalidNonce,
    InvalidSigner,
    MissingRole,
)
from registry.chain.signing import SECP256K1_N
from registry.chain.transactions import GAS_LIMITS
from registry.core.records import ModelRecord, RegistrationResult, Role
from registry.core.signed_request import (
    DOMAIN_FIELDS,
    REGISTRATION_FIELDS,
    InvalidRegistrationRequest,
    Registration,
    SignedRegistration,
    SigningDomain,
    split_nonce,
)
from registry.errors import ChainError, ConfigurationError, InvalidInput

DOMAIN_TYPEHASH = keccak(f"EIP712Domain({','.join(f'{t} {n}' for n, t in DOMAIN_FIELDS)})".encode())
REGISTRATION_TYPEHASH = keccak(
    f"Registration({','.join(f'{t} {n}' for n, t in REGISTRATION_FIELDS)})".encode()
)
NONCE_CANCELLED_TOPIC = "0x" + keccak(b"NonceCancelled(address,uint256)").hex()


class WrongSigningDomain(InvalidInput):
    """The request was signed for another chain or another registry contract (``field``:
    ``chainId`` or ``verifyingContract``): no signature of it can ever be accepted here."""

    code = "wrong_signing_domain"

    def __init__(self, field: str, signed: object, actual: object, what: str, flag: str) -> None:
        super().__init__(
            f"the request was signed for {what} {signed}, but this {_HERE[field]} is {actual}; "
            f"the registrar signs it again for {actual} (sign-registration {flag} {actual})",
            field=field,
            signed=str(signed),
            actual=str(actual),
        )
        self.field, self.signed, self.actual = field, signed, actual


_HERE = {"chainId": "chain", "verifyingContract": "registry", "name": "registry's domain"}


class NonceUsed(InvalidNonce):
    """The request's nonce was used by a registration: a replay of a submitted request."""

    code = "nonce_used"

    def __init__(self, registrar: str, nonce: int, expected: int) -> None:
        super().__init__(registrar, nonce, expected)
        lane, sequence = split_nonce(nonce)
        self.message = (
            f"replayed: {registrar}'s nonce {nonce} (lane {lane}, sequence {sequence}) was "
            "already used by a registration, so this request was submitted before; a signed "
            "request registers once (`registry show` finds the record)"
        )
        self.args = (self.message,)


class NonceCancelled(InvalidNonce):
    """The registrar cancelled the request's nonce (``cancelNonce``) before it was sent."""

    code = "nonce_cancelled"

    def __init__(self, registrar: str, nonce: int, expected: int, block: int) -> None:
        super().__init__(registrar, nonce, expected)
        lane, sequence = split_nonce(nonce)
        self.message = (
            f"cancelled: {registrar} cancelled its nonce {nonce} (lane {lane}, sequence "
            f"{sequence}) in block {block}, so this request can never be sent; the registrar "
            "signs a new one with its next nonce"
        )
        self.args = (self.message,)
        self.details["cancelled_block"] = block


# --------------------------------------------------------------------------------------------
# EIP-712
# --------------------------------------------------------------------------------------------


def domain_separator(domain: SigningDomain) -> bytes:
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                DOMAIN_TYPEHASH,
                keccak(domain.name.encode()),
                keccak(domain.version.encode()),
                domain.chain_id,
                domain.verifying_contract,
            ],
        )
    )


_STRUCT_TYPES = ["bytes32", *(t for _, t in REGISTRATION_FIELDS)]


def struct_hash(registration: Registration) -> bytes:
    r = registration
    values = [REGISTRATION_TYPEHASH, *r.leaf(), r.registrar, r.nonce, r.deadline]
    return keccak(abi_encode(_STRUCT_TYPES, values))


def signing_hash(domain: SigningDomain, registration: Registration) -> bytes:
    """The 32 bytes a registrar signs: ``keccak256(0x1901 ‖ domainSeparator ‖ structHash)``."""
    return keccak(b"\x19\x01" + domain_separator(domain) + struct_hash(registration))


def sign(account: LocalAccount, domain: SigningDomain, registration: Registration) -> bytes:
    """The 65-byte signature (r, s, v with v 27 or 28, s in the lower half) of ``account``."""
    signed = account.unsafe_sign_hash(Hash32(signing_hash(domain, registration)))
    return bytes(signed.signature)


def recover(domain: SigningDomain, registration: Registration, signature: bytes) -> str:
    """The address whose key made ``signature`` over the request, checked as the contract checks
    it (65 bytes, v 27 or 28, s in the lower half); ``InvalidRegistrationRequest`` otherwise."""
    if len(signature) != 65:
        raise InvalidRegistrationRequest(
            "signature", f"is {len(signature)} bytes; a key's signature is 65 (r, s, v)"
        )
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise InvalidRegistrationRequest("signature", f"has v = {v}; it must be 27 or 28")
    if not 0 < r < SECP256K1_N or not 0 < s <= SECP256K1_N // 2:
        raise InvalidRegistrationRequest(
            "signature",
            "has r or s out of range (s must lie in the lower half of the curve order, as "
            "EIP-2 asks, so that no second form of a signature exists)",
        )
    compact = signature[:64] + bytes([v - 27])
    try:
        key = PublicKey.from_signature_and_message(
            compact, signing_hash(domain, registration), hasher=None
        )
    except ValueError:
        raise InvalidRegistrationRequest(
            "signature", "recovers to no public key: it is not a signature"
        ) from None
    return to_checksum_address(keccak(key.format(compressed=False)[1:])[-20:])


# --------------------------------------------------------------------------------------------
# Reads
# --------------------------------------------------------------------------------------------


def read_domain(client: RegistryClient) -> SigningDomain:
    """The contract's own EIP-712 domain (ERC-5267 ``eip712Domain()``)."""
    _fields, name, version, chain_id, contract, _salt, _ext = client.call("eip712Domain")
    return SigningDomain(
        chain_id=int(chain_id),
        verifying_contract=to_checksum_address(contract),
        name=str(name),
        version=str(version),
    )


def next_nonce(client: RegistryClient, registrar: str, lane: int = 0) -> int:
    """``registrar``'s next nonce in ``lane``: ``lane << 64 | sequences used or cancelled``."""
    return int(client.call("nonces", to_checksum_address(registrar), lane)[0])


def chain_time(client: RegistryClient) -> int:
    """The latest block's timestamp: what a deadline is compared with."""
    block = client.rpc.run(lambda: client.w3.eth.get_block("latest"))
    return int(block["timestamp"])


def cancelled_in(client: RegistryClient, registrar: str, nonce: int) -> int | None:
    """The block in which ``registrar`` cancelled ``nonce``, or None if it never did."""
    logs = client.events.logs(
        [NONCE_CANCELLED_TOPIC, address_topic(registrar)], client.deployment_block
    )
    for log in logs:
        (cancelled,) = abi_decode(["uint256"], to_bytes(log["data"]))
        if int(cancelled) == nonce:
            return int(log["blockNumber"])
    return None


# --------------------------------------------------------------------------------------------
# Before sending: what the contract would say
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preflight:
    """What the checks found: the chain's time, the signer (None for a contract registrar,
    whose ERC-1271 wallet decides in the simulation) and who would send it."""

    chain_time: int
    signer: str | None
    sender: str | None

    @property
    def contract_registrar(self) -> bool:
        return self.signer is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_time": self.chain_time,
            "signer": self.signer,
            "signature_check": "erc1271" if self.signer is None else "ecdsa",
            "sender": self.sender,
        }


def check_domain(client: RegistryClient, domain: SigningDomain) -> None:
    """Refuse a request signed for another chain or contract than the client's."""
    chain_id = client.chain_id
    if domain.chain_id != chain_id:
        raise WrongSigningDomain("chainId", domain.chain_id, chain_id, "chain", "--chain-id")
    if domain.verifying_contract != client.address:
        raise WrongSigningDomain(
            "verifyingContract", domain.verifying_contract, client.address, "contract", "--contract"
        )
    own = read_domain(client)
    if (own.name, own.version) != (domain.name, domain.version):
        raise WrongSigningDomain(
            "name",
            f"{domain.name!r} version {domain.version!r}",
            f"{own.name!r} version {own.version!r}",
            "the domain",
            "--contract",
        )


def preflight(client: RegistryClient, request: SignedRegistration) -> Preflight:
    """Every check the contract makes, read from the chain and named (module docstring), then
    the transaction simulated with ``eth_call``. Raises the first refusal; sends nothing."""
    reg = request.registration
    check_domain(client, request.domain)
    now = chain_time(client)
    if reg.deadline < now:
        raise ExpiredSignature(reg.deadline, now)
    check_nonce(client, reg.registrar, reg.nonce)
    signer: str | None = None
    if not client.rpc.code(reg.registrar):
        signer = recover(request.domain, reg, request.signature)
        if signer != reg.registrar:
            raise InvalidSigner(reg.registrar, signer)
    if not client.has_role(Role.REGISTRAR, reg.registrar):
        raise MissingRole(reg.registrar, int(Role.REGISTRAR))
    sender = client.account.address if client.account is not None else None
    simulate(client, "registerBySig", _arguments(request))
    return Preflight(chain_time=now, signer=signer, sender=sender)


def check_nonce(client: RegistryClient, registrar: str, nonce: int) -> None:
    """Refuse ``nonce`` unless it is ``registrar``'s next in its lane, naming why not."""
    lane, _sequence = split_nonce(nonce)
    expected = next_nonce(client, registrar, lane)
    if nonce == expected:
        return
    if nonce > expected:
        raise InvalidNonce(registrar, nonce, expected)  # an earlier one of its lane goes first
    block = cancelled_in(client, registrar, nonce)
    if block is not None:
        raise NonceCancelled(registrar, nonce, expected, block)
    raise NonceUsed(registrar, nonce, expected)


def simulate(client: RegistryClient, name: str, args: tuple[Any, ...]) -> None:
    """Run the write as a call from the sender, with the gas it will be sent with (the contract's
    typed error if it would revert)."""
    client.check_identity()
    call: dict[str, Any] = {
        "to": client.address,
        "data": to_hex(client.abi.encode_call(name, *args)),
        "gas": GAS_LIMITS[name],
    }
    if client.account is not None:
        call["from"] = client.account.address
    client.rpc.eth_call(call, "latest")


def _arguments(request: SignedRegistration) -> tuple[Any, ...]:
    reg = request.registration
    return (reg.leaf(), reg.registrar, reg.nonce, reg.deadline, request.signature)


# --------------------------------------------------------------------------------------------
# Writes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submitted:
    """A signed registration that landed, and who sent it."""

    result: RegistrationResult
    preflight: Preflight

    @property
    def record(self) -> ModelRecord:
        return self.result.record

    def to_dict(self) -> dict[str, Any]:
        return {**self.result.to_dict(), "relay": self.preflight.to_dict()}


def submit(client: RegistryClient, request: SignedRegistration) -> Submitted:
    """Check (``preflight``), then send ``registerBySig`` from the client's key and wait for it."""
    _sender(client, "submitting a signed registration")
    checked = preflight(client, request)
    reg = request.registration
    receipt = client.transact("registerBySig", *_arguments(request))
    event = client.abi.registration_in(receipt, reg.digest)
    if event is None or event.registrant != reg.registrar:
        raise ChainError(
            f"the signed registration of {reg.digest.short} was mined without its event naming "
            f"{reg.registrar} as registrant"
        )
    client.events.remember(event)
    result = RegistrationResult(
        event.to_record(), event.tx_hash, event.block_number, int(receipt["gasUsed"])
    )
    return Submitted(result, checked)


@dataclass(frozen=True, slots=True)
class CancelledNonce:
    registrar: str
    nonce: int
    tx_hash: str
    block_number: int

    def to_dict(self) -> dict[str, Any]:
        lane, sequence = split_nonce(self.nonce)
        return {
            "registrar": self.registrar,
            "nonce": str(self.nonce),
            "lane": str(lane),
            "sequence": sequence,
            "tx_hash": self.tx_hash,
            "block_number": self.block_number,
        }


def cancel_nonce(client: RegistryClient, nonce: int) -> CancelledNonce:
    """Cancel the client's own ``nonce`` (its next in its lane): a request signed with it can no
    longer be sent. Checked and simulated first, like a submission."""
    me = _sender(client, "cancelling a nonce").address
    check_nonce(client, me, nonce)
    simulate(client, "cancelNonce", (nonce,))
    receipt = client.transact("cancelNonce", nonce)
    return CancelledNonce(
        me, nonce, to_hex(receipt["transactionHash"]), int(receipt["blockNumber"])
    )


def _sender(client: RegistryClient, what: str) -> LocalAccount:
    if client.account is None:
        raise ConfigurationError(
            f"{what} sends a transaction, and no signing key is configured to pay for it; set "
            "REGISTRY_PRIVATE_KEY or REGISTRY_KEYSTORE (+ REGISTRY_KEYSTORE_PASSWORD)"
        )
    return client.account
