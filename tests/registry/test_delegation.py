"""Delegated registration: a registrar key signs offline (EIP-712), any account submits.

On the session's eth-tester chain: the hashes agree with ``eth_account``'s typed-data encoder and
with the contract; a request signed by one account and sent by another lands with the signer as
registrant; every refusal (replayed, expired, cancelled, out of order, wrong chain, wrong
contract, wrong signer, other fields signed, no Registrar role, malformed typed data) is raised
as the error that names it, before any gas is spent, with nothing anchored and the nonce
unchanged. The command line (offline signing with no node reachable, submit, nonce,
cancel-nonce, verify) runs against the session's anvil.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from apikit import make_card, make_checkpoint
from chainkit import request as plain_request
from contractkit import deploy_wallet
from contractkit import wallet_code as compile_wallet
from eth_account.messages import _hash_eip191_message, encode_typed_data
from hypothesis import given
from hypothesis import strategies as st

from registry.chain.client import RegistryClient
from registry.chain.delegation import (
    NonceCancelled,
    NonceUsed,
    WrongSigningDomain,
    cancel_nonce,
    chain_time,
    next_nonce,
    preflight,
    read_domain,
    recover,
    signing_hash,
    simulate,
    submit,
)
from registry.chain.reverts import (
    AlreadyRegistered,
    ExpiredSignature,
    InvalidNonce,
    InvalidSigner,
    MissingRole,
)
from registry.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from registry.core.digest import Digest, digest_bytes
from registry.core.records import Role
from registry.core.signed_request import (
    UINT256_MAX,
    InvalidRegistrationRequest,
    Registration,
    SignedRegistration,
    SigningDomain,
    compose_nonce,
    parse_deadline,
)
from registry.delegated import sign_registration, submit_signed, unsigned_card
from registry.errors import InvalidInput, InvalidModelCard

REGISTRAR, RELAYER, STRANGER = 1, 2, 3


def domain_of(client: RegistryClient) -> SigningDomain:
    return SigningDomain(chain_id=client.chain_id, verifying_contract=client.address)


def signed(
    chain: Any,
    *,
    seed: int = 1,
    signer: int = REGISTRAR,
    registrar: str | None = None,
    nonce: int | None = None,
    deadline: int | None = None,
    domain: SigningDomain | None = None,
    **card: Any,
) -> SignedRegistration:
    """A request signed by account ``signer`` for a fresh checkpoint, as sign-registration
    writes it (round-tripped through the file format)."""
    checkpoint = make_checkpoint(seed)
    account = chain.account(signer)
    request = sign_registration(
        account,
        checkpoint,
        domain=domain or domain_of(chain.client),
        nonce=next_nonce(chain.client, registrar or account.address) if nonce is None else nonce,
        deadline=deadline if deadline is not None else chain_time(chain.client) + 3_600,
        registrar=registrar,
        card=make_card(checkpoint, **card),
        checkpoint_file="model.safetensors",
    )
    return SignedRegistration.parse(request.to_json())


@pytest.fixture
def chain(memory: Any) -> Any:
    """The eth-tester chain with account 1 a registrar (it signs) and account 2 a relayer
    without any role (it pays)."""
    memory.client.grant_role(Role.REGISTRAR, memory.address(REGISTRAR))
    memory.relayer = memory.other(RELAYER)
    return memory


def refused(chain: Any, request: SignedRegistration, error: type[Exception]) -> Any:
    """Submit ``request`` from the relayer: it raises ``error``, nothing is anchored, the
    registrar's nonce is unchanged and the relayer sent no transaction."""
    reg = request.registration
    relayer: RegistryClient = chain.relayer
    sent_before = relayer.w3.eth.get_transaction_count(relayer.account.address)
    nonce_before = next_nonce(relayer, reg.registrar, reg.lane)
    with pytest.raises(error) as caught:
        submit(relayer, request)
    assert type(caught.value) is error
    assert relayer.get(reg.digest) is None
    assert next_nonce(relayer, reg.registrar, reg.lane) == nonce_before
    assert relayer.w3.eth.get_transaction_count(relayer.account.address) == sent_before
    return caught.value


# --- the typed data ---------------------------------------------------------------------------


def test_signing_hash_is_eth_accounts_typed_data_hash_and_the_contracts_domain(chain) -> None:
    request = signed(chain, nonce=compose_nonce(7, 3), deadline=2_000_000_000)
    assert read_domain(chain.client) == request.domain
    message = encode_typed_data(full_message=request.typed_data())
    assert _hash_eip191_message(message) == signing_hash(request.domain, request.registration)
    assert recover(request.domain, request.registration, request.signature) == chain.address(
        REGISTRAR
    )


def test_the_request_file_round_trips_canonically_with_every_field_in_hex(chain) -> None:
    request = signed(chain, nonce=compose_nonce(1, 2))
    text = request.to_json()
    document = json.loads(text)
    assert text == json.dumps(document, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    message = document["typed_data"]["message"]
    assert message["nonce"] == hex((1 << 64) | 2)
    assert message["accuracyBps"] == hex(9_250)
    assert message["digest"] == "0x" + request.registration.digest.hex
    assert document["unsigned"]["checkpoint_file"] == "model.safetensors"
    assert SignedRegistration.parse(text) == request


# --- the happy path ----------------------------------------------------------------------------


def test_a_request_signed_by_the_registrar_and_sent_by_a_relayer_lands_for_the_registrar(
    chain,
) -> None:
    request = signed(chain)
    reg = request.registration
    done = submit(chain.relayer, request)
    record = chain.client.get(reg.digest)
    assert record is not None and record.valid
    assert record.registrant == chain.address(REGISTRAR) == done.record.registrant
    assert (record.accuracy_bps, record.test_set_digest) == (reg.accuracy_bps, reg.test_set_digest)
    assert record.card_digest == reg.card_digest and record.parent is None
    assert done.preflight.signer == chain.address(REGISTRAR)
    assert done.preflight.sender == chain.address(RELAYER)
    assert next_nonce(chain.client, reg.registrar) == reg.nonce + 1
    events = chain.events(done.result.tx_hash)
    assert [name for name, _ in events] == ["ModelRegistered"]
    assert events[0][1]["registrant"] == chain.address(REGISTRAR)
    receipt = chain.client.w3.eth.get_transaction_receipt(done.result.tx_hash)
    assert receipt["from"] == chain.address(RELAYER)


def test_lanes_are_independent_and_a_sequence_goes_in_order(chain) -> None:
    later = signed(chain, seed=1, nonce=compose_nonce(5, 1))
    first_of_lane_5 = signed(chain, seed=2, nonce=compose_nonce(5, 0))
    other_lane = signed(chain, seed=3, nonce=compose_nonce(9, 0))
    error = refused(chain, later, InvalidNonce)
    assert (error.nonce, error.expected) == (compose_nonce(5, 1), compose_nonce(5, 0))
    submit(chain.relayer, other_lane)
    submit(chain.relayer, first_of_lane_5)
    submit(chain.relayer, later)
    assert next_nonce(chain.client, chain.address(REGISTRAR), 5) == compose_nonce(5, 2)


# --- refusals, each named ---------------------------------------------------------------------


def test_a_replayed_request_is_refused_as_used(chain) -> None:
    request = signed(chain)
    first = submit(chain.relayer, request)
    sent = chain.relayer.w3.eth.get_transaction_count(chain.address(RELAYER))
    with pytest.raises(NonceUsed) as caught:
        submit(chain.relayer, request)
    assert "replayed" in caught.value.message
    assert caught.value.code == "nonce_used" and caught.value.nonce == request.registration.nonce
    record = chain.client.get(request.registration.digest)
    assert record is not None and record.registration_tx == first.result.tx_hash
    assert next_nonce(chain.client, chain.address(REGISTRAR)) == request.registration.nonce + 1
    assert chain.relayer.w3.eth.get_transaction_count(chain.address(RELAYER)) == sent


def test_an_expired_request_is_refused_with_its_deadline_and_the_chains_time(chain) -> None:
    now = chain_time(chain.client)
    error = refused(chain, signed(chain, deadline=now - 1), ExpiredSignature)
    assert error.deadline == now - 1 and error.now >= now


def test_a_cancelled_nonce_is_refused_as_cancelled(chain) -> None:
    request = signed(chain)
    registrar = chain.other(REGISTRAR)
    done = cancel_nonce(registrar, request.registration.nonce)
    events = chain.events(done.tx_hash)
    assert events == [
        ("NonceCancelled", {"registrar": chain.address(REGISTRAR), "nonce": done.nonce})
    ]
    nonce_after = next_nonce(chain.client, chain.address(REGISTRAR))
    with pytest.raises(NonceCancelled) as caught:
        submit(chain.relayer, request)
    assert caught.value.details["cancelled_block"] == done.block_number
    assert chain.client.get(request.registration.digest) is None
    assert next_nonce(chain.client, chain.address(REGISTRAR)) == nonce_after


def test_cancelling_a_nonce_that_is_not_the_next_is_refused(chain) -> None:
    registrar = chain.other(REGISTRAR)
    with pytest.raises(InvalidNonce) as caught:
        cancel_nonce(registrar, 3)
    assert caught.value.expected == 0


def test_a_request_signed_for_another_chain_is_refused_naming_both(chain) -> None:
    domain = replace(domain_of(chain.client), chain_id=5)
    error = refused(chain, signed(chain, domain=domain), WrongSigningDomain)
    assert error.details == {
        "field": "chainId",
        "signed": "5",
        "actual": str(chain.client.chain_id),
    }
    assert f"signed for chain 5, but this chain is {chain.client.chain_id}" in error.message


def test_a_request_signed_for_another_contract_is_refused_naming_both(chain) -> None:
    elsewhere = "0x" + "12" * 20
    domain = replace(domain_of(chain.client), verifying_contract=elsewhere)
    error = refused(chain, signed(chain, domain=domain), WrongSigningDomain)
    assert error.field == "verifyingContract"
    assert error.actual == chain.client.address
    assert "signed for contract 0x1212" in error.message


def test_a_request_signed_by_another_key_is_refused_naming_the_signer(chain) -> None:
    request = signed(chain, signer=STRANGER, registrar=chain.address(REGISTRAR))
    error = refused(chain, request, InvalidSigner)
    assert (error.registrar, error.recovered) == (chain.address(REGISTRAR), chain.address(STRANGER))


def test_a_signature_over_other_fields_is_refused_as_another_signer(chain) -> None:
    request = signed(chain)
    document = json.loads(request.to_json())
    document["typed_data"]["message"]["accuracyBps"] = hex(9_999)
    document["unsigned"]["card"] = None
    tampered = SignedRegistration.parse(json.dumps(document).encode())
    error = refused(chain, tampered, InvalidSigner)
    assert error.registrar == chain.address(REGISTRAR)
    assert error.recovered not in (chain.address(REGISTRAR), "0x" + "00" * 20)


def test_a_signer_without_the_registrar_role_is_refused(chain) -> None:
    error = refused(chain, signed(chain, signer=STRANGER), MissingRole)
    assert (error.account, error.role) == (chain.address(STRANGER), "registrar")


def test_what_the_contract_refuses_beyond_the_checks_is_refused_by_the_simulation(chain) -> None:
    request = signed(chain)
    chain.client.register(replace(plain_request("x"), digest=request.registration.digest))
    sent = chain.relayer.w3.eth.get_transaction_count(chain.address(RELAYER))
    with pytest.raises(AlreadyRegistered):
        submit(chain.relayer, request)
    assert chain.relayer.w3.eth.get_transaction_count(chain.address(RELAYER)) == sent
    assert next_nonce(chain.client, chain.address(REGISTRAR)) == request.registration.nonce


def test_the_contract_itself_refuses_a_wrong_signer_with_the_recovered_address(chain) -> None:
    # Past every check of ours: the contract's own error, decoded.
    request = signed(chain, signer=STRANGER, registrar=chain.address(REGISTRAR))
    reg = request.registration
    args = (reg.leaf(), reg.registrar, reg.nonce, reg.deadline, request.signature)
    with pytest.raises(InvalidSigner) as caught:
        simulate(chain.relayer, "registerBySig", args)
    assert caught.value.recovered == chain.address(STRANGER)


def test_a_high_s_signature_is_refused_as_malformed_before_the_chain(chain) -> None:
    from registry.chain.signing import SECP256K1_N

    request = signed(chain)
    sig = request.signature
    s = int.from_bytes(sig[32:64], "big")
    flipped = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    error = refused(chain, replace(request, signature=flipped), InvalidRegistrationRequest)
    assert error.field == "signature" and "lower half" in error.problem


def test_a_card_that_is_not_the_signed_one_is_refused_before_the_chain(chain) -> None:
    request = signed(chain)
    other_card = json.loads(make_card(make_checkpoint(1), accuracy_bps=9_999))
    with pytest.raises(InvalidModelCard) as caught:
        submit_signed(lambda: chain.relayer, replace(request, card=other_card))
    assert caught.value.details["field"] == "unsigned.card (digest)"
    assert unsigned_card(replace(request, card=None)) is None


# --- malformed request files ------------------------------------------------------------------


def _mutations() -> list[tuple[str, Any, str]]:
    """(what, a change to the parsed document, the field the error must name)."""

    def at(*path: str, value: Any = None, drop: bool = False) -> Any:
        def change(document: dict[str, Any]) -> None:
            node = document
            for key in path[:-1]:
                node = node[key]
            if drop:
                del node[path[-1]]
            else:
                node[path[-1]] = value

        return change

    m = ("typed_data", "message")
    return [
        ("kind", at("kind", value="something-else"), "kind"),
        ("version", at("version", value=2), "version"),
        ("version true", at("version", value=True), "version"),
        ("no signature", at("signature", drop=True), "<file>"),
        ("extra field", at("extra", value=1), "<file>"),
        ("types", at("typed_data", "types", "Registration", value=[]), "typed_data.types"),
        ("primary", at("typed_data", "primaryType", value="Mail"), "typed_data.primaryType"),
        ("name", at("typed_data", "domain", "name", value="Other"), "typed_data.domain.name"),
        ("chain id", at("typed_data", "domain", "chainId", value=-1), "typed_data.domain.chainId"),
        ("digest", at(*m, "digest", value="0x1234"), "typed_data.message.digest"),
        ("zero", at(*m, "digest", value="0x" + "0" * 64), "typed_data.message.digest"),
        ("accuracy", at(*m, "accuracyBps", value=hex(10_001)), "typed_data.message.accuracyBps"),
        ("decimal", at(*m, "nonce", value="12"), "typed_data.message.nonce"),
        ("padded", at(*m, "nonce", value="0x01"), "typed_data.message.nonce"),
        ("number", at(*m, "deadline", value=17), "typed_data.message.deadline"),
        ("registrar", at(*m, "registrar", value="0xabc"), "typed_data.message.registrar"),
        ("unsigned extra", at(*m, "memo", value="x"), "typed_data.message"),
        ("missing", at(*m, "parent", drop=True), "typed_data.message"),
        ("signature", at("signature", value="0xzz"), "signature"),
        ("card", at("unsigned", "card", value=[1]), "unsigned.card"),
    ]


@pytest.mark.parametrize(("change", "field"), [(c, f) for _, c, f in _mutations()])
def test_a_malformed_request_file_is_refused_naming_the_field(chain, change, field) -> None:
    document = json.loads(signed(chain).to_json())
    change(document)
    with pytest.raises(InvalidRegistrationRequest) as caught:
        SignedRegistration.parse(json.dumps(document).encode(), source="req.json")
    assert caught.value.field == field
    assert caught.value.message.startswith("req.json is not a usable signed registration")


@pytest.mark.parametrize(
    "text", [b"", b"[]", b'{"kind": 1, "kind": 2}', b"{" * 100, b'{"version": NaN}', b"\xff"]
)
def test_a_request_that_is_not_strict_json_is_refused_as_the_file(text: bytes) -> None:
    with pytest.raises(InvalidRegistrationRequest) as caught:
        SignedRegistration.parse(text)
    assert caught.value.field == "<file>"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
_REQUEST = json.loads(
    SignedRegistration(
        SigningDomain(31_337, "0x" + "ab" * 20),
        Registration(
            digest_bytes(b"a"), 9_250, digest_bytes(b"t"), digest_bytes(b"c"), None,
            "0x" + "cd" * 20, 0, 1,
        ),
        b"\x01" * 65,
    ).to_json()
)  # fmt: skip


@given(path=st.sampled_from(["", "typed_data", "typed_data.domain", "typed_data.message"]),
       key=st.text(max_size=16), value=_JSON)  # fmt: skip
def test_any_value_anywhere_is_parsed_or_refused_as_the_request_never_otherwise(
    path: str, key: str, value: Any
) -> None:
    document = json.loads(json.dumps(_REQUEST))
    node = document
    for part in filter(None, path.split(".")):
        node = node[part]
    node[key] = value
    try:
        parsed = SignedRegistration.parse(json.dumps(document).encode())
    except InvalidRegistrationRequest as exc:
        assert exc.field and exc.problem
        return
    assert SignedRegistration.parse(parsed.to_json()) == parsed  # what is taken, is kept


@given(
    digest=st.binary(min_size=32, max_size=32).filter(any),
    accuracy=st.integers(0, 10_000),
    parent=st.binary(min_size=32, max_size=32),
    registrar=st.binary(min_size=20, max_size=20),
    nonce=st.integers(0, UINT256_MAX),
    deadline=st.integers(0, UINT256_MAX),
    chain_id=st.integers(1, UINT256_MAX),
    signature=st.binary(min_size=1, max_size=200),
)
def test_every_request_round_trips_through_its_file(
    digest: bytes,
    accuracy: int,
    parent: bytes,
    registrar: bytes,
    nonce: int,
    deadline: int,
    chain_id: int,
    signature: bytes,
) -> None:
    request = SignedRegistration(
        SigningDomain(chain_id, "0x" + registrar[::-1].hex()),
        Registration(
            Digest.from_bytes(digest), accuracy, digest_bytes(b"t"), digest_bytes(b"c"),
            None if not any(parent) else Digest.from_bytes(parent), "0x" + registrar.hex(),
            nonce, deadline,
        ),
        signature,
    )  # fmt: skip
    assert SignedRegistration.parse(request.to_json()) == request


# --- deadlines and nonces as people type them --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("7d", 604_800), ("12h", 43_200), ("1d12h", 129_600), ("90m", 5_400)]
)
def test_a_deadline_as_a_duration_counts_from_now(text: str, seconds: int) -> None:
    assert parse_deadline(text, 1_000) == 1_000 + seconds


def test_a_deadline_as_an_iso_time_needs_a_zone_and_must_lie_ahead() -> None:
    assert parse_deadline("2030-01-01T00:00:00Z", 0) == 1_893_456_000
    assert parse_deadline("2030-01-01T01:00:00+01:00", 0) == 1_893_456_000
    for text, words in (
        ("2030-01-01T00:00:00", "no time zone"),
        ("2000-01-01T00:00:00Z", "not after now"),
        ("soon", "neither"),
        ("0d", "not after now"),
    ):
        with pytest.raises(InvalidInput, match=words):
            parse_deadline(text, int(time.time()))


def test_a_nonce_out_of_its_lane_or_sequence_range_is_refused() -> None:
    assert compose_nonce(2, 5) == (2 << 64) | 5
    with pytest.raises(InvalidInput):
        compose_nonce(1 << 192, 0)
    with pytest.raises(InvalidInput):
        compose_nonce(0, 1 << 64)


def test_preflight_reports_the_signer_and_the_sender(chain) -> None:
    checked = preflight(chain.relayer, signed(chain))
    assert checked.to_dict()["signature_check"] == "ecdsa"
    assert (checked.signer, checked.sender) == (chain.address(REGISTRAR), chain.address(RELAYER))


# --- a contract registrar (ERC-1271) -------------------------------------------------------------


@pytest.fixture(scope="module")
def wallet_code() -> bytes:
    """The test wallet (accepts what its owner's key signed over the hash), compiled by the
    compiler the contract artifact comes from."""
    return compile_wallet()


@pytest.fixture
def wallet(chain: Any, wallet_code: bytes) -> str:
    """A wallet owned by the registrar's key, holding the Registrar role itself."""
    return deploy_wallet(chain, REGISTRAR, wallet_code)


def test_a_contract_registrar_signed_for_by_its_owner_lands_for_the_wallet(chain, wallet) -> None:
    request = signed(chain, registrar=wallet)  # the owner's key signs, the wallet registers
    done = submit(chain.relayer, request)
    assert done.record.registrant == wallet
    assert done.preflight.signer is None
    assert done.preflight.to_dict()["signature_check"] == "erc1271"
    assert next_nonce(chain.client, wallet) == request.registration.nonce + 1


def test_a_contract_registrar_whose_wallet_refuses_is_invalid_signer(chain, wallet) -> None:
    request = signed(chain, signer=STRANGER, registrar=wallet)
    error = refused(chain, request, InvalidSigner)
    assert (error.registrar, error.recovered) == (wallet, "0x" + "00" * 20)
    assert "wallet refused it" in error.message


# --- the command line, against anvil ------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(["--json", *argv])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else None, captured.err


@pytest.fixture
def cli(anvil: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The anvil chain for the CLI: account 1 a registrar, the environment pointing at it;
    ``key(i)`` switches the signing key."""
    anvil.client.grant_role(Role.REGISTRAR, anvil.address(REGISTRAR))
    for name in ("REGISTRY_CHAIN_ID", "REGISTRY_KEYSTORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REGISTRY_RPC_URL", anvil.endpoint)
    monkeypatch.setenv("REGISTRY_CONTRACT_ADDRESS", anvil.client.address)
    anvil.key = lambda i: monkeypatch.setenv("REGISTRY_PRIVATE_KEY", anvil.keys[i])
    anvil.offline = lambda: (
        monkeypatch.setenv("REGISTRY_RPC_URL", "http://127.0.0.1:9"),
        monkeypatch.delenv("REGISTRY_CONTRACT_ADDRESS"),
    )
    anvil.online = lambda: (
        monkeypatch.setenv("REGISTRY_RPC_URL", anvil.endpoint),
        monkeypatch.setenv("REGISTRY_CONTRACT_ADDRESS", anvil.client.address),
    )
    checkpoint = make_checkpoint(21)
    anvil.checkpoint = tmp_path / "model.safetensors"
    anvil.checkpoint.write_bytes(checkpoint)
    anvil.card = tmp_path / "model_card.json"
    anvil.card.write_bytes(make_card(checkpoint))
    return anvil


@pytest.mark.anvil
def test_cli_signs_offline_submits_from_another_key_and_verify_names_the_signer(
    cli, capsys, tmp_path: Path
) -> None:
    out = tmp_path / "request.json"
    chain_id, contract = str(cli.client.chain_id), cli.client.address
    cli.key(REGISTRAR)
    cli.offline()  # nothing answers at 127.0.0.1:9: the flags must say everything
    code, signed_out, err = run(
        capsys, "sign-registration", str(cli.checkpoint), "--card", str(cli.card),
        "--deadline", "1h", "--chain-id", chain_id, "--contract", contract,
        "--lane", "0", "--sequence", "0", "--out", str(out),
    )  # fmt: skip
    assert code == EXIT_OK, err
    assert signed_out["offline"] is True and signed_out["registrar"] == cli.address(REGISTRAR)

    cli.online()
    cli.key(RELAYER)
    code, done, err = run(capsys, "submit", str(out))
    assert code == EXIT_OK, err
    assert done["record"]["registrant"] == cli.address(REGISTRAR)
    assert done["relay"]["sender"] == cli.address(RELAYER)

    code, verdict, _ = run(capsys, "verify", str(cli.checkpoint))
    assert code == EXIT_OK and verdict["verified"] is True
    assert verdict["record"]["registrant"] == cli.address(REGISTRAR)

    code, again, _ = run(capsys, "submit", str(out))
    assert code == EXIT_FAILED and again["error"]["code"] == "nonce_used"
    code, nonce, _ = run(capsys, "nonce", cli.address(REGISTRAR))
    assert code == EXIT_OK and nonce["nonce"] == "1"


@pytest.mark.anvil
def test_cli_reads_the_domain_and_nonce_from_the_chain_when_not_given(
    cli, capsys, tmp_path: Path
) -> None:
    out = tmp_path / "request.json"
    cli.key(REGISTRAR)
    code, signed_out, err = run(
        capsys, "sign-registration", str(cli.checkpoint), "--deadline", "1d", "--out", str(out)
    )
    assert code == EXIT_OK, err
    assert signed_out["offline"] is False and signed_out["nonce"] == "0"
    assert signed_out["chain_id"] == cli.client.chain_id
    code, _, _ = run(capsys, "sign-registration", str(cli.checkpoint), "--deadline", "1d",
                     "--out", str(out))  # fmt: skip
    assert code == EXIT_USAGE  # never overwritten

    cli.key(RELAYER)
    code, dry, err = run(capsys, "submit", "--dry-run", str(out))
    assert code == EXIT_OK, err
    assert dry["signer"] == cli.address(REGISTRAR)
    assert cli.client.get(digest_bytes(cli.checkpoint.read_bytes())) is None

    cli.key(REGISTRAR)
    code, cancelled, err = run(capsys, "cancel-nonce", "0")
    assert code == EXIT_OK, err
    cli.key(RELAYER)
    code, refusal, _ = run(capsys, "submit", str(out))
    assert code == EXIT_FAILED and refusal["error"]["code"] == "nonce_cancelled"
    assert refusal["error"]["details"]["cancelled_block"] == cancelled["block_number"]


@pytest.mark.anvil
def test_cli_refuses_offline_signing_without_the_flags_naming_what_is_missing(cli, capsys) -> None:
    cli.key(REGISTRAR)
    cli.offline()
    code, _, err = run(
        capsys, "sign-registration", str(cli.checkpoint), "--deadline", "1h", "--chain-id", "1",
        "--contract", cli.client.address,
    )  # fmt: skip
    assert code == EXIT_FAILED
    assert "the nonce" in err and "to sign offline give --chain-id, --contract" in err


@pytest.mark.anvil
def test_cli_submit_of_a_request_for_another_chain_is_bad_input(
    cli, capsys, tmp_path: Path
) -> None:
    out = tmp_path / "request.json"
    cli.key(REGISTRAR)
    cli.offline()
    code, _, err = run(
        capsys, "sign-registration", str(cli.checkpoint), "--deadline", "1h",
        "--chain-id", "5", "--contract", cli.client.address, "--nonce", "0", "--out", str(out),
    )  # fmt: skip
    assert code == EXIT_OK, err
    cli.online()
    cli.key(RELAYER)
    code, refusal, err = run(capsys, "submit", str(out))
    assert code == EXIT_USAGE
    assert refusal["error"]["code"] == "wrong_signing_domain"
    assert f"signed for chain 5, but this chain is {cli.client.chain_id}" in err
