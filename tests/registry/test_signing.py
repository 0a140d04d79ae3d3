from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.chain.signing import Eip1559Signer

ACCOUNT = Account.from_key("0x" + "42" * 32)
SIGNER = Eip1559Signer(bytes(ACCOUNT.key))
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@settings(max_examples=200)
@given(
    chain_id=st.integers(1, 2**32),
    nonce=st.integers(0, 2**40),
    tip=st.integers(0, 10**12),
    extra_fee=st.integers(0, 10**12),
    gas=st.integers(21_000, 30_000_000),
    value=st.integers(0, 10**20),
    data=st.binary(max_size=300),
    create=st.booleans(),
)
def test_signature_is_byte_identical_to_eth_account(
    chain_id: int,
    nonce: int,
    tip: int,
    extra_fee: int,
    gas: int,
    value: int,
    data: bytes,
    create: bool,
) -> None:
    fields = {
        "chainId": chain_id,
        "nonce": nonce,
        "maxPriorityFeePerGas": tip,
        "maxFeePerGas": tip + extra_fee,
        "gas": gas,
        "value": value,
        "data": data,
        "type": 2,
    }
    if not create:
        fields["to"] = CONTRACT
    expected = ACCOUNT.sign_transaction(fields)
    ours = SIGNER.sign(
        chain_id=chain_id,
        nonce=nonce,
        max_priority_fee_per_gas=tip,
        max_fee_per_gas=tip + extra_fee,
        gas=gas,
        to=None if create else bytes.fromhex(CONTRACT[2:]),
        value=value,
        data=data,
    )
    assert ours.raw == bytes(expected.raw_transaction)
    assert ours.hash == bytes(expected.hash)


def test_signed_transaction_recovers_to_the_signing_address() -> None:
    signed = SIGNER.sign(
        chain_id=31337,
        nonce=7,
        max_priority_fee_per_gas=1,
        max_fee_per_gas=2,
        gas=90_000,
        to=bytes.fromhex(CONTRACT[2:]),
        data=b"\x01\x02",
    )
    assert Account.recover_transaction(signed.raw) == ACCOUNT.address
