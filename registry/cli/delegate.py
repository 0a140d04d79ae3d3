"""Delegated registration: sign-registration, submit, cancel-nonce and nonce.

A registrar key that never leaves an offline machine signs a registration there
(``sign-registration``: no network needed when ``--chain-id``, ``--contract`` and the nonce are
given); the request file travels to any machine whose account pays the gas (``submit``), or to
the clinic service's ``POST /models/relay``. ``cancel-nonce`` withdraws a signed request before
anyone sends it; ``nonce`` reads a registrar's next nonce in a lane. Like the record commands,
nothing here imports torch or a web framework, and the chain is reached only inside handlers.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from registry.cli.output import (
    EXIT_OK,
    AddCommand,
    Output,
    client_for,
    settings_for,
    writer_for,
)
from registry.cli.records import card_bytes
from registry.core.address import parse_address
from registry.core.digest import read_regular_file
from registry.core.signed_request import (
    SignedRegistration,
    SigningDomain,
    compose_nonce,
    parse_deadline,
    split_nonce,
)
from registry.core.times import iso_utc
from registry.errors import ChainUnavailable, ConfigurationError, InvalidInput

if TYPE_CHECKING:
    from registry.chain.client import RegistryClient


def _integer(text: str) -> int:
    """A uint256 typed in decimal or 0x hex (a nonce with a lane is far beyond 2**53)."""
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a decimal or 0x hex integer") from None
    if not 0 <= value < 1 << 256:
        raise argparse.ArgumentTypeError(f"{text!r} is outside 0 .. 2**256 - 1")
    return value


# --- sign-registration -----------------------------------------------------------------------


def cmd_sign_registration(args: argparse.Namespace, out: Output) -> int:
    from registry.chain.keys import load_account
    from registry.core.files import atomic_write
    from registry.delegated import sign_registration

    settings = settings_for(args)
    account = load_account(settings)
    if account is None:
        raise ConfigurationError(
            "sign-registration signs with the registrar's key, and none is configured; set "
            "REGISTRY_PRIVATE_KEY, or REGISTRY_KEYSTORE (--keystore) with "
            "REGISTRY_KEYSTORE_PASSWORD"
        )
    registrar = parse_address(args.registrar, "--registrar") if args.registrar else account.address
    if args.nonce is not None and (args.lane is not None or args.sequence is not None):
        raise InvalidInput(
            "give either --nonce N or --lane L [--sequence S], not both",
            given=["nonce", "lane" if args.lane is not None else "sequence"],
        )
    # Read before anything touches a chain: a mistyped deadline or file needs no node.
    deadline = parse_deadline(args.deadline, int(time.time()))
    data = read_regular_file(args.file)
    card = card_bytes(args)
    chain = _Chain(args)
    chain_id = settings.chain_id or chain.client("the chain id (--chain-id)").chain_id
    contract = settings.contract_address or chain.client("the contract (--contract)").address
    nonce = _nonce(args, chain, registrar)
    request = sign_registration(
        account,
        data,
        domain=SigningDomain(chain_id=chain_id, verifying_contract=parse_address(contract)),
        nonce=nonce,
        deadline=deadline,
        registrar=registrar,
        card=card,
        card_digest=args.card_digest,
        accuracy_bps=args.accuracy_bps,
        test_set_digest=args.test_set_digest,
        parent=args.parent,
        checkpoint_file=args.file.name,
    )
    reg = request.registration
    path: Path = args.out or Path(f"signed-registration-{reg.digest.hex[:12]}.json")
    try:
        atomic_write(path, request.to_json(), overwrite=False)
    except FileExistsError:
        raise InvalidInput(
            f"{path} exists; a signed request is never overwritten: give another --out PATH",
            out=str(path),
        ) from None
    lane, sequence = split_nonce(nonce)
    data_out = {
        "request": str(path),
        "digest": str(reg.digest),
        "registrar": reg.registrar,
        "signer": account.address,
        "chain_id": chain_id,
        "contract": request.domain.verifying_contract,
        "nonce": str(nonce),
        "lane": str(lane),
        "sequence": sequence,
        "deadline": reg.deadline,
        "deadline_utc": iso_utc(reg.deadline),
        "offline": chain.asked is None,
    }
    out.result(
        data_out,
        f"signed the registration of {reg.digest} for {reg.registrar} (chain {chain_id}, "
        f"contract {request.domain.verifying_contract}, lane {lane}, sequence {sequence}), "
        f"valid until {iso_utc(reg.deadline)}; wrote {path}: any account can send it with "
        f"`registry submit {path}`",
    )
    return EXIT_OK


class _Chain:
    """The chain, asked only for what the flags leave out: connected on first need, once."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.asked: RegistryClient | None = None

    def client(self, wanted: str) -> RegistryClient:
        if self.asked is None:
            try:
                self.asked = client_for(self.args)
            except ChainUnavailable as exc:
                raise ChainUnavailable(
                    exc.details.get("endpoint", "the chain"),
                    f"{exc.details.get('cause', 'unreachable')}; {wanted} was not given, so it "
                    "must be read from the chain; to sign offline give --chain-id, --contract "
                    "and --nonce (or --lane L --sequence S)",
                ) from None
        return self.asked


def _nonce(args: argparse.Namespace, chain: _Chain, registrar: str) -> int:
    if args.nonce is not None:
        return int(args.nonce)
    lane = int(args.lane or 0)
    if args.sequence is not None:
        return compose_nonce(lane, int(args.sequence))
    compose_nonce(lane, 0)  # the lane's range, before a chain is asked
    from registry.chain.delegation import next_nonce

    return next_nonce(
        chain.client("the nonce (--nonce, or --lane L --sequence S)"), registrar, lane
    )


def _add_sign_registration(add: AddCommand) -> None:
    p = add(
        "sign-registration",
        cmd_sign_registration,
        "sign a registration offline (EIP-712) for anyone to submit; checks the checkpoint and "
        "card as register does",
    )
    p.add_argument("file", type=Path, help="the checkpoint (.safetensors)")
    p.add_argument(
        "--card",
        type=Path,
        help="model card JSON, canonical as `registry train` writes it (default: "
        "model_card.json beside FILE); carried in the request, unsigned, for the relayer",
    )
    p.add_argument("--card-digest", help="digest of a model card kept elsewhere, instead of --card")
    p.add_argument("--accuracy-bps", type=int, help="with --card-digest: test accuracy, bps")
    p.add_argument("--test-set-digest", help="with --card-digest: digest of the test split")
    p.add_argument("--parent", help="digest of the checkpoint this one derives from")
    p.add_argument(
        "--deadline",
        required=True,
        help="last moment the request may be submitted: ISO 8601 with a time zone "
        "(2026-12-01T18:00:00Z) or a duration from now (7d, 12h, 1d12h, 90m)",
    )
    p.add_argument(
        "--nonce",
        type=_integer,
        help="the registrar's nonce, lane << 64 | sequence (default: its next one in --lane, "
        "read from the chain)",
    )
    p.add_argument(
        "--lane",
        type=_integer,
        help="nonce lane (default 0): requests of different lanes may be sent in any order",
    )
    p.add_argument(
        "--sequence",
        type=_integer,
        help="with --lane: the sequence number in that lane (default: the next, from the chain)",
    )
    p.add_argument(
        "--registrar",
        help="the registrant: a contract wallet (ERC-1271) this key signs for (default: the "
        "key's own address)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="where to write the request (default: signed-registration-<digest>.json here); "
        "never overwritten",
    )


# --- submit ----------------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace, out: Output) -> int:
    from registry.chain.delegation import preflight
    from registry.delegated import submit_signed, unsigned_card

    request = SignedRegistration.parse(read_regular_file(args.request), source=str(args.request))
    reg = request.registration
    if args.dry_run:
        unsigned_card(request)
        checked = preflight(client_for(args), request)
        out.result(
            {"digest": str(reg.digest), "registrar": reg.registrar, **checked.to_dict()},
            f"would register {reg.digest} for {reg.registrar}: every check passed and the "
            f"simulation succeeded ({_signature_note(checked.signer)}); nothing was sent",
        )
        return EXIT_OK
    done = submit_signed(lambda: writer_for(args, out), request)
    r = done.record
    out.result(
        done.to_dict(),
        f"registered {r.digest} with accuracy {r.accuracy_percent:.2f} % in block "
        f"{done.result.block_number} for registrant {r.registrant} (signed offline, "
        f"{_signature_note(done.preflight.signer)}; sent by {done.preflight.sender})",
    )
    return EXIT_OK


def _signature_note(signer: str | None) -> str:
    if signer is None:
        return "the registrar is a contract: its ERC-1271 isValidSignature accepted the signature"
    return f"signature by {signer}"


def _add_submit(add: AddCommand) -> None:
    p = add(
        "submit",
        cmd_submit,
        "send a signed registration request (sign-registration's file); this key pays the gas",
    )
    p.add_argument("request", type=Path, help="the signed request file")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check and simulate only: say whether the chain would accept it, send nothing",
    )


# --- cancel-nonce and nonce ------------------------------------------------------------------


def cmd_cancel_nonce(args: argparse.Namespace, out: Output) -> int:
    from registry.chain.delegation import cancel_nonce

    nonce = _nonce_argument(args)
    done = cancel_nonce(writer_for(args, out), nonce)
    lane, sequence = split_nonce(nonce)
    out.result(
        done.to_dict(),
        f"cancelled nonce {nonce} (lane {lane}, sequence {sequence}) of {done.registrar} in "
        f"block {done.block_number}: a request signed with it can no longer be sent",
    )
    return EXIT_OK


def _nonce_argument(args: argparse.Namespace) -> int:
    if args.nonce is not None:
        if args.lane is not None or args.sequence is not None:
            raise InvalidInput("give either NONCE or --lane L --sequence S, not both")
        return int(args.nonce)
    if args.lane is None or args.sequence is None:
        raise InvalidInput(
            "name the nonce to cancel: NONCE (as sign-registration printed it) or --lane L "
            "--sequence S",
            missing=["nonce"],
        )
    return compose_nonce(int(args.lane), int(args.sequence))


def _add_cancel_nonce(add: AddCommand) -> None:
    p = add(
        "cancel-nonce",
        cmd_cancel_nonce,
        "cancel your next signed-registration nonce in its lane, so its request can never be sent",
    )
    p.add_argument("nonce", type=_integer, nargs="?", help="the nonce (decimal or 0x hex)")
    p.add_argument("--lane", type=_integer, help="instead of NONCE: the lane ...")
    p.add_argument("--sequence", type=_integer, help="... and the sequence in it")


def cmd_nonce(args: argparse.Namespace, out: Output) -> int:
    from registry.chain.delegation import next_nonce

    client = client_for(args)
    if args.address:
        registrar = parse_address(args.address, "ADDRESS")
    elif client.account is not None:
        registrar = client.account.address
    else:
        raise InvalidInput(
            "whose nonce? give ADDRESS, or configure the key (REGISTRY_PRIVATE_KEY) to read its own",
            missing=["address"],
        )
    lane = int(args.lane or 0)
    compose_nonce(lane, 0)
    nonce = next_nonce(client, registrar, lane)
    _, sequence = split_nonce(nonce)
    out.result(
        {"registrar": registrar, "lane": str(lane), "sequence": sequence, "nonce": str(nonce)},
        f"next nonce of {registrar} in lane {lane}: {nonce} (sequence {sequence})",
    )
    return EXIT_OK


def _add_nonce(add: AddCommand) -> None:
    p = add("nonce", cmd_nonce, "a registrar's next signed-registration nonce in a lane")
    p.add_argument("address", nargs="?", help="the registrar (default: the configured key's)")
    p.add_argument("--lane", type=_integer, help="the lane (default 0)")


def add_commands(add: AddCommand) -> None:
    """Add the delegated-registration commands, in the order ``registry --help`` lists them."""
    for add_one in (_add_sign_registration, _add_submit, _add_cancel_nonce, _add_nonce):
        add_one(add)
