"""What the tests of the contract's attestation, audit-anchor and signed-registration writes share.

These tests drive the contract with raw writes so that its own checks are reached, whatever the
client's typed methods check first. ``send`` gives each write an explicit gas limit, generous
enough that a refusal is always the contract's error and never an out-of-gas. A signed
registration is built as EIP-712 typed data with eth_account, the way a wallet would, over the
domain the contract names itself (ERC-5267). A contract registrar is the ERC-1271 wallet under
tests/contracts, compiled with the solc-js build the artifact comes from.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from eth_abi import encode
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils import to_checksum_address

from registry.chain.abi import to_hex
from registry.chain.artifacts import PROJECT_ROOT
from registry.core.records import Role

# IModelRegistry.Role.Evaluator, written out so a reordered enum fails these tests.
EVALUATOR = 3
# Enough for any of these writes; a refusal must come from the contract's checks.
GAS = 300_000
WALLET_SOURCE = PROJECT_ROOT / "tests" / "contracts" / "Erc1271Wallet.sol"


def send(client: Any, name: str, *args: Any) -> dict[str, Any]:
    """Send ``name(*args)`` from ``client``'s account and return the confirmed receipt; a revert
    raises the contract's typed error."""
    data = client.abi.encode_call(name, *args)
    receipt: dict[str, Any] = client.transactions.execute(
        {"to": client.address, "data": to_hex(data), "gas": GAS}
    )
    return receipt


def grant(backend: Any, role: int, account: str) -> None:
    """The admin gives ``account`` the role numbered ``role``."""
    send(backend.client, "grantRole", role, account)


REGISTRATION_TYPE = [
    {"name": "digest", "type": "bytes32"},
    {"name": "accuracyBps", "type": "uint16"},
    {"name": "testSetDigest", "type": "bytes32"},
    {"name": "cardDigest", "type": "bytes32"},
    {"name": "parent", "type": "bytes32"},
    {"name": "registrar", "type": "address"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
RECORD_FIELDS = ("digest", "accuracyBps", "testSetDigest", "cardDigest", "parent")


def eip712_domain(client: Any) -> dict[str, Any]:
    """The signing domain as the contract names it; only the fields ERC-5267's 0x0f announces."""
    fields, name, version, chain_id, contract, salt, extensions = client.call("eip712Domain")
    assert (fields, salt, tuple(extensions)) == (b"\x0f", bytes(32), ())
    return {
        "name": name,
        "version": version,
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(contract),
    }


def registration_message(
    record: tuple, registrar: str, nonce: int, deadline: int, domain: dict[str, Any]
) -> SignableMessage:
    """The typed data a registrar signs for ``registerBySig(record, registrar, nonce, ...)``;
    ``record`` is the Leaf tuple (digest, accuracyBps, testSetDigest, cardDigest, parent)."""
    fields = dict(zip(RECORD_FIELDS, record, strict=True))
    return encode_typed_data(
        full_message={
            "types": {"EIP712Domain": DOMAIN_TYPE, "Registration": REGISTRATION_TYPE},
            "primaryType": "Registration",
            "domain": domain,
            "message": {**fields, "registrar": registrar, "nonce": nonce, "deadline": deadline},
        }
    )


def later(client: Any, seconds: int = 3_600) -> int:
    """A deadline ``seconds`` after the latest block."""
    return int(client.w3.eth.get_block("latest")["timestamp"]) + seconds


def sign_registration(client: Any, signer: Any, record: tuple, nonce: int = 0) -> dict[str, Any]:
    """``signer`` (a LocalAccount) signs ``record`` for itself as registrar: the arguments of
    ``registerBySig`` by name, valid for an hour."""
    deadline = later(client)
    signable = registration_message(record, signer.address, nonce, deadline, eip712_domain(client))
    return {
        "record": record,
        "registrar": signer.address,
        "nonce": nonce,
        "deadline": deadline,
        "signature": bytes(signer.sign_message(signable).signature),
    }


def relay(client: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Send a signed registration from ``client``'s account, whoever that is."""
    r = request
    return send(
        client, "registerBySig", r["record"], r["registrar"], r["nonce"], r["deadline"],
        r["signature"],
    )  # fmt: skip


def wallet_code() -> bytes:
    """The test wallet's creation code (it accepts what its owner's key signed over the hash),
    compiled by the compiler the contract artifact comes from."""
    spec = importlib.util.spec_from_file_location(
        "compile_contracts", PROJECT_ROOT / "scripts" / "compile_contracts.py"
    )
    assert spec is not None and spec.loader is not None
    compiler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compiler)
    standard_input = {
        "language": "Solidity",
        "sources": {WALLET_SOURCE.name: {"content": WALLET_SOURCE.read_text(encoding="utf-8")}},
        "settings": {
            "evmVersion": "cancun",
            "outputSelection": {"*": {"*": ["evm.bytecode.object"]}},
        },
    }
    output = compiler.standard_json_output(
        compiler.run_standard_json(compiler.find_solc(), standard_input)
    )
    errors = [e["formattedMessage"] for e in output.get("errors", []) if e["severity"] == "error"]
    assert not errors, errors
    code = output["contracts"][WALLET_SOURCE.name]["Erc1271Wallet"]["evm"]["bytecode"]["object"]
    return bytes.fromhex(code)


def deploy_wallet(backend: Any, owner: int, code: bytes) -> str:
    """A wallet owned by account ``owner``'s key, deployed from that account and given the
    Registrar role itself: its address."""
    sender = backend.other(owner)
    creation = code + encode(["address"], [sender.account.address])
    receipt = sender.transactions.execute({"to": None, "data": to_hex(creation), "gas": 1_500_000})
    address = to_checksum_address(receipt["contractAddress"])
    backend.client.grant_role(Role.REGISTRAR, address)
    return address
