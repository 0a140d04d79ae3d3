"""Revert decoding: every custom error of the ABI has a class, and both revert shapes decode.

Selectors here come from signatures written out by hand, not from the ABI, so a renamed or
re-typed error in the contract fails these tests instead of silently following along.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from eth_abi import encode
from eth_tester.exceptions import TransactionFailed as EthTesterTransactionFailed
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError

from registry.chain import reverts
from registry.chain.artifacts import load_artifact
from registry.chain.rpc import Rpc
from registry.core.digest import Digest
from registry.errors import ChainUnavailable, ContractRevert

ACCOUNT = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"
D1 = hashlib.sha256(b"checkpoint").digest()
D2 = hashlib.sha256(b"other checkpoint").digest()


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


ErrorClass = type[reverts.RegistryContractError]

# (signature, argument types, argument values, class, expected fields)
CASES: list[tuple[str, list[str], list[Any], ErrorClass, dict[str, Any]]] = [
    ("ModelRegistryMissingRole(address,uint8)", ["address", "uint8"], [ACCOUNT, 1],
     reverts.MissingRole, {"account": ACCOUNT, "role": "registrar"}),
    ("ModelRegistryMissingRole(address,uint8)", ["address", "uint8"], [ACCOUNT, 2],
     reverts.MissingRole, {"account": ACCOUNT, "role": "revoker"}),
    ("ModelRegistryNotAdmin(address)", ["address"], [ACCOUNT],
     reverts.NotAdmin, {"account": ACCOUNT}),
    ("ModelRegistryNotPendingAdmin(address)", ["address"], [ACCOUNT],
     reverts.NotPendingAdmin, {"account": ACCOUNT}),
    ("ModelRegistryZeroAddress()", [], [], reverts.ZeroAddress, {}),
    ("ModelRegistryZeroDigest()", [], [], reverts.ZeroDigest, {}),
    ("ModelRegistryAlreadyRegistered(bytes32,address)", ["bytes32", "address"], [D1, ACCOUNT],
     reverts.AlreadyRegistered, {"digest": Digest.from_bytes(D1), "registrant": ACCOUNT}),
    ("ModelRegistryUnknownModel(bytes32)", ["bytes32"], [D1],
     reverts.UnknownModel, {"digest": Digest.from_bytes(D1)}),
    ("ModelRegistryAccuracyOutOfRange(uint16)", ["uint16"], [10_001],
     reverts.AccuracyOutOfRange, {"accuracy_bps": 10_001}),
    ("ModelRegistryZeroTestSetDigest()", [], [], reverts.ZeroTestSetDigest, {}),
    ("ModelRegistryZeroCardDigest()", [], [], reverts.ZeroCardDigest, {}),
    ("ModelRegistryInvalidParent(bytes32,bytes32)", ["bytes32", "bytes32"], [D1, D2],
     reverts.InvalidParent, {"digest": Digest.from_bytes(D1), "parent": Digest.from_bytes(D2)}),
    ("ModelRegistryAlreadyRevoked(bytes32,uint40)", ["bytes32", "uint40"], [D1, 1_700_000_000],
     reverts.AlreadyRevoked, {"digest": Digest.from_bytes(D1), "revoked_at": 1_700_000_000}),
    ("ModelRegistryInvalidReason(uint8)", ["uint8"], [8], reverts.InvalidReason, {"reason": 8}),
    ("ModelRegistryInvalidReplacement(bytes32,bytes32)", ["bytes32", "bytes32"], [D1, D2],
     reverts.InvalidReplacement,
     {"digest": Digest.from_bytes(D1), "replacement": Digest.from_bytes(D2)}),
    ("ModelRegistryNotAllowedToRevoke(address,bytes32)", ["address", "bytes32"], [ACCOUNT, D1],
     reverts.NotAllowedToRevoke, {"account": ACCOUNT, "digest": Digest.from_bytes(D1)}),
    ("ModelRegistryEmptyBatch()", [], [], reverts.EmptyBatch, {}),
    ("ModelRegistryUnknownBatch(bytes32)", ["bytes32"], [D1],
     reverts.UnknownBatch, {"root": "0x" + D1.hex()}),
    ("ModelRegistryBatchAlreadyRegistered(bytes32,address)", ["bytes32", "address"],
     [D1, ACCOUNT], reverts.BatchAlreadyRegistered, {"root": "0x" + D1.hex(), "registrant": ACCOUNT}),
    ("ModelRegistryInvalidProof(bytes32,bytes32)", ["bytes32", "bytes32"], [D1, D2],
     reverts.InvalidProof, {"root": "0x" + D1.hex(), "digest": Digest.from_bytes(D2)}),
    ("ModelRegistryBatchRevoked(bytes32,uint8)", ["bytes32", "uint8"], [D1, 2],
     reverts.BatchRevoked, {"root": "0x" + D1.hex(), "reason": 2}),
    ("ModelRegistryNotAllowedToRevokeBatch(address,bytes32)", ["address", "bytes32"],
     [ACCOUNT, D1], reverts.NotAllowedToRevokeBatch, {"account": ACCOUNT, "root": "0x" + D1.hex()}),
    ("ModelRegistryMissingRole(address,uint8)", ["address", "uint8"], [ACCOUNT, 3],
     reverts.MissingRole, {"account": ACCOUNT, "role": "evaluator"}),
    ("ModelRegistrySelfAttestation(bytes32,address)", ["bytes32", "address"], [D1, ACCOUNT],
     reverts.SelfAttestation, {"digest": Digest.from_bytes(D1), "evaluator": ACCOUNT}),
    ("ModelRegistryAlreadyAttested(bytes32,address,uint40)", ["bytes32", "address", "uint40"],
     [D1, ACCOUNT, 1_700_000_000], reverts.AlreadyAttested,
     {"digest": Digest.from_bytes(D1), "evaluator": ACCOUNT, "attested_at": 1_700_000_000}),
    ("ModelRegistryNoAttestation(bytes32,address)", ["bytes32", "address"], [D1, ACCOUNT],
     reverts.NoAttestation, {"digest": Digest.from_bytes(D1), "evaluator": ACCOUNT}),
    ("ModelRegistryRevokedModel(bytes32,uint40)", ["bytes32", "uint40"], [D1, 1_700_000_000],
     reverts.RevokedModel, {"digest": Digest.from_bytes(D1), "revoked_at": 1_700_000_000}),
    ("ModelRegistryAuditLogNotGrowing(address,uint64,uint64)", ["address", "uint64", "uint64"],
     [ACCOUNT, 5, 9], reverts.AuditLogNotGrowing,
     {"service": ACCOUNT, "size": 5, "anchored_size": 9}),
    ("ModelRegistryExpiredSignature(uint256,uint256)", ["uint256", "uint256"],
     [1_700_000_000, 1_700_000_060], reverts.ExpiredSignature,
     {"deadline": 1_700_000_000, "now": 1_700_000_060}),
    ("ModelRegistryInvalidNonce(address,uint256,uint256)", ["address", "uint256", "uint256"],
     [ACCOUNT, (7 << 64) | 2, (7 << 64) | 3], reverts.InvalidNonce,
     {"registrar": ACCOUNT, "nonce": (7 << 64) | 2, "expected": (7 << 64) | 3}),
    ("ModelRegistryInvalidSigner(address,address)", ["address", "address"], [ACCOUNT, D1[:20]],
     reverts.InvalidSigner,
     {"registrar": ACCOUNT, "recovered": Web3.to_checksum_address(D1[:20])}),
]  # fmt: skip


def revert_data(signature: str, types: list[str], values: list[Any]) -> bytes:
    return selector(signature) + encode(types, values)


@pytest.fixture(scope="module")
def decoder() -> reverts.RevertDecoder:
    return reverts.RevertDecoder(load_artifact().abi)


@pytest.fixture
def offline_rpc(decoder: reverts.RevertDecoder) -> Rpc:
    """The translation point without a chain behind it: only its translation is exercised."""
    return Rpc(Web3(), endpoint="memory", decoder=decoder)


def raising(exc: Exception):
    def fn() -> None:
        raise exc

    return fn


def test_every_error_in_the_abi_has_a_python_class(decoder: reverts.RevertDecoder) -> None:
    assert decoder.unmapped == []


def test_every_python_error_class_names_an_error_in_the_abi() -> None:
    abi_names = {e["name"] for e in load_artifact().abi if e["type"] == "error"}
    classes = {cls.solidity_name for cls in reverts.RegistryContractError.__subclasses__()}
    assert classes == abi_names
    assert len(abi_names) == 29


def test_the_hand_written_signatures_cover_every_abi_error() -> None:
    abi_errors = {
        f"{e['name']}({','.join(i['type'] for i in e['inputs'])})"
        for e in load_artifact().abi
        if e["type"] == "error"
    }
    assert {case[0] for case in CASES} == abi_errors


def test_decoder_reports_an_abi_error_without_a_class_as_unmapped() -> None:
    abi = [{"type": "error", "name": "ModelRegistrySomethingNew", "inputs": []}]
    assert reverts.RevertDecoder(abi).unmapped == ["ModelRegistrySomethingNew"]


def test_every_error_class_has_a_distinct_code() -> None:
    codes = [cls.code for cls in reverts.RegistryContractError.__subclasses__()]
    assert len(codes) == len(set(codes))
    assert "contract_revert" not in codes


@pytest.mark.parametrize(("signature", "types", "values", "cls", "fields"), CASES)
def test_decode_hand_encoded_revert_gives_class_with_fields(
    decoder: reverts.RevertDecoder,
    signature: str,
    types: list[str],
    values: list[Any],
    cls: type,
    fields: dict[str, Any],
) -> None:
    error = decoder.decode(revert_data(signature, types, values))
    assert type(error) is cls
    for name, value in fields.items():
        assert getattr(error, name) == value
    # The JSON form carries the same fields, as text where they are digests or integers too wide
    # for a JSON number to hold exactly (a nonce's lane sits above bit 64).
    assert error.details == {
        k: str(v) if isinstance(v, Digest) or (isinstance(v, int) and v >= 2**64) else v
        for k, v in fields.items()
    }
    assert error.to_dict()["code"] == cls.code


def test_decode_checksums_lowercase_addresses(decoder: reverts.RevertDecoder) -> None:
    data = revert_data("ModelRegistryNotAdmin(address)", ["address"], [ACCOUNT.lower()])
    error = decoder.decode(data)
    assert isinstance(error, reverts.NotAdmin)
    assert error.account == ACCOUNT


def test_decode_unknown_selector_gives_undecoded_revert_with_the_data(
    decoder: reverts.RevertDecoder,
) -> None:
    data = selector("SomethingElse(uint256)") + encode(["uint256"], [7])
    error = decoder.decode(data)
    assert type(error) is reverts.UndecodedRevert
    assert error.data == data
    assert error.details == {"data": "0x" + data.hex()}


def test_decode_solidity_error_string_gives_undecoded_revert(
    decoder: reverts.RevertDecoder,
) -> None:
    data = selector("Error(string)") + encode(["string"], ["nope"])
    assert type(decoder.decode(data)) is reverts.UndecodedRevert


def test_decode_empty_revert_gives_undecoded_revert(decoder: reverts.RevertDecoder) -> None:
    error = decoder.decode(b"")
    assert type(error) is reverts.UndecodedRevert
    assert error.data == b""


def test_decode_truncated_arguments_gives_undecoded_revert(decoder: reverts.RevertDecoder) -> None:
    data = revert_data(
        "ModelRegistryAlreadyRegistered(bytes32,address)", ["bytes32", "address"], [D1, ACCOUNT]
    )[:40]
    error = decoder.decode(data)
    assert type(error) is reverts.UndecodedRevert
    assert error.data == data


def test_undecoded_revert_is_a_contract_revert() -> None:
    assert issubclass(reverts.UndecodedRevert, ContractRevert)
    assert all(
        issubclass(c, ContractRevert) for c in reverts.RegistryContractError.__subclasses__()
    )


# --------------------------------------------------------------------------------------------
# The two shapes a revert arrives in, through the one translation point (rpc.py)
# --------------------------------------------------------------------------------------------

ALREADY = revert_data(
    "ModelRegistryAlreadyRegistered(bytes32,address)", ["bytes32", "address"], [D1, ACCOUNT]
)


def assert_already_registered(error: BaseException) -> None:
    assert type(error) is reverts.AlreadyRegistered
    assert error.digest == Digest.from_bytes(D1)
    assert error.registrant == ACCOUNT


def test_eth_tester_transaction_failed_with_bytes_in_message_decodes(
    offline_rpc: Rpc,
) -> None:
    cause = EthTesterTransactionFailed(f"execution reverted: {ALREADY!r}")
    with pytest.raises(reverts.AlreadyRegistered) as caught:
        offline_rpc.run(raising(cause))
    assert_already_registered(caught.value)
    assert caught.value.__cause__ is cause


def test_eth_tester_transaction_failed_with_bytes_argument_decodes(
    offline_rpc: Rpc,
) -> None:
    with pytest.raises(reverts.AlreadyRegistered) as caught:
        offline_rpc.run(raising(EthTesterTransactionFailed(ALREADY)))
    assert_already_registered(caught.value)


def test_eth_tester_revert_with_quote_and_backslash_bytes_decodes(
    offline_rpc: Rpc,
) -> None:
    # Digests whose bytes print as quotes or backslashes must survive repr -> literal_eval.
    tricky = b"'\"\\" + bytes(29)
    data = revert_data("ModelRegistryUnknownModel(bytes32)", ["bytes32"], [tricky])
    with pytest.raises(reverts.UnknownModel) as caught:
        offline_rpc.run(raising(EthTesterTransactionFailed(f"execution reverted: {data!r}")))
    assert caught.value.digest == Digest.from_bytes(tricky)


def test_eth_tester_revert_without_data_gives_undecoded_revert(
    offline_rpc: Rpc,
) -> None:
    with pytest.raises(reverts.UndecodedRevert) as caught:
        offline_rpc.run(raising(EthTesterTransactionFailed("execution reverted")))
    assert caught.value.data == b""


def test_node_contract_custom_error_decodes(offline_rpc: Rpc) -> None:
    cause = ContractCustomError("0x" + ALREADY.hex(), data="0x" + ALREADY.hex())
    with pytest.raises(reverts.AlreadyRegistered) as caught:
        offline_rpc.run(raising(cause))
    assert_already_registered(caught.value)
    assert caught.value.__cause__ is cause


def test_node_contract_logic_error_with_hex_data_decodes(offline_rpc: Rpc) -> None:
    cause = ContractLogicError("execution reverted", data="0x" + ALREADY.hex())
    with pytest.raises(reverts.AlreadyRegistered) as caught:
        offline_rpc.run(raising(cause))
    assert_already_registered(caught.value)


def test_node_contract_logic_error_without_data_gives_plain_contract_revert(
    offline_rpc: Rpc,
) -> None:
    with pytest.raises(ContractRevert) as caught:
        offline_rpc.run(raising(ContractLogicError("execution reverted: out of gas")))
    assert type(caught.value) is ContractRevert
    assert "out of gas" in caught.value.message


def test_a_connection_failure_is_chain_unavailable_and_tells_the_listeners(
    offline_rpc: Rpc,
) -> None:
    forgotten: list[str] = []
    offline_rpc.on_disconnect(lambda: forgotten.append("identity"))
    offline_rpc.on_disconnect(lambda: forgotten.append("nonce"))
    cause = ConnectionRefusedError("nothing listens")
    with pytest.raises(ChainUnavailable) as caught:
        offline_rpc.run(raising(cause))
    assert caught.value.endpoint == "memory"
    assert caught.value.__cause__ is cause
    assert forgotten == ["identity", "nonce"]


def test_other_exceptions_pass_through_untranslated(offline_rpc: Rpc) -> None:
    with pytest.raises(KeyError):
        offline_rpc.run(raising(KeyError("a bug, not a chain problem")))


def test_module_exports_a_class_per_error_and_nothing_stale() -> None:
    exported = {
        name
        for name, obj in vars(reverts).items()
        if isinstance(obj, type)
        and issubclass(obj, reverts.RegistryContractError)
        and obj is not reverts.RegistryContractError
    }
    assert exported == {cls.__name__ for cls in reverts.RegistryContractError.__subclasses__()}
