"""The ``registry`` command: deploy, hash, register, verify, revoke, inspect, manage roles.

Results go to stdout (one human line, or JSON with ``--json``); logs and errors to stderr.
Exit codes: 0 success / verified, 1 not verified or the operation failed, 2 usage or bad input.
Settings come from ``REGISTRY_*`` variables; the flags below override them. Keys are never taken
on the command line (they would show in the process list): use REGISTRY_PRIVATE_KEY or a keystore.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.config import Settings, get_settings
from registry.core.digest import (
    Digest,
    digest_file,
    read_regular_file,
)
from registry.core.records import RevocationReason, Role, Verdict
from registry.errors import ConfigurationError, InvalidInput, RegistryError

if TYPE_CHECKING:
    from registry.chain.client import RegistryClient

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Output:
    """Writes results as JSON or as short human sentences."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def result(self, data: Any, human: str) -> None:
        if self.as_json:
            print(json.dumps(data, indent=2, sort_keys=True, default=str))
        else:
            print(human)

    def error(self, exc: RegistryError) -> None:
        print(f"error: {exc.message}", file=sys.stderr)
        if self.as_json:
            print(json.dumps({"error": exc.to_dict()}, indent=2, sort_keys=True, default=str))


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    return get_settings(
        rpc_url=args.rpc_url,
        contract_address=args.contract,
        data_dir=args.data_dir,
        chain_id=args.chain_id,
        confirmations=args.confirmations,
        keystore=args.keystore,
        **extra,
    )


def _client(args: argparse.Namespace) -> RegistryClient:
    from registry.chain.connection import connect

    return connect(_settings(args))


# --- commands -----------------------------------------------------------------------------


def cmd_hash(args: argparse.Namespace, out: Output) -> int:
    digest = digest_file(args.file)
    out.result({"file": str(args.file), "digest": str(digest)}, f"{digest}  {args.file}")
    return EXIT_OK


def cmd_chain(args: argparse.Namespace, out: Output) -> int:
    # The one library module that starts nodes: `registry chain` is the dev node's front end.
    from registry.devnet import background

    settings = _settings(args)
    if args.action == "start":
        info = background.start_background(
            settings.data_dir, port=args.port, chain_id=args.node_chain_id
        )
        out.result(info, f"local chain running at {info['url']} (state in {settings.data_dir})")
    elif args.action == "stop":
        stopped = background.stop_background(settings.data_dir)
        out.result(
            {"stopped": stopped}, "local chain stopped" if stopped else "no local chain was running"
        )
    else:
        status = background.background_status(settings.data_dir)
        out.result(
            status or {"running": False},
            f"local chain running at {status['url']}" if status else "no local chain running",
        )
        return EXIT_OK if status else EXIT_FAILED
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace, out: Output) -> int:
    from registry.chain.connection import make_web3, resolve_endpoint
    from registry.chain.deploy import deploy_and_grant_self, deploy_contract
    from registry.chain.deployments import save_deployment
    from registry.chain.keys import load_account

    settings = _settings(args)
    if settings.rpc_url == "memory":
        raise InvalidInput(
            "deploying to the in-process 'memory' chain is pointless: it ends with "
            "this command; start a node with `registry chain start`"
        )
    account = load_account(settings)
    if account is None:
        raise ConfigurationError(
            "deploying needs a signing key: set REGISTRY_PRIVATE_KEY or "
            "REGISTRY_KEYSTORE (+ REGISTRY_KEYSTORE_PASSWORD)"
        )
    endpoint = resolve_endpoint(settings)
    w3 = make_web3(endpoint, settings.request_timeout_s)
    options: dict[str, Any] = {
        "endpoint": endpoint,
        "confirmations": settings.confirmations,
        "tx_timeout_s": settings.tx_timeout_s,
    }
    if args.grant_self and args.admin in (None, account.address):
        _, deployment = deploy_and_grant_self(w3, account, **options)
    else:
        _, deployment = deploy_contract(w3, account, admin=args.admin, **options)
    path = save_deployment(settings.data_dir, deployment)
    out.result(
        {**deployment.to_dict(), "record": str(path)},
        f"registry deployed at {deployment.address} on chain {deployment.chain_id} "
        f"(block {deployment.block_number}); recorded in {path}",
    )
    return EXIT_OK


def _card_bytes(args: argparse.Namespace) -> bytes | None:
    """The model card to read: --card, else model_card.json beside FILE unless --card-digest
    names a card kept elsewhere."""
    if args.card is None and args.card_digest:
        return None
    card: Path = args.card or (args.file.parent / "model_card.json")
    if args.card is None and not card.exists():
        raise InvalidInput(
            f"no model card given and {card} does not exist; pass --card FILE "
            "(the JSON written by `registry train`), or --card-digest D with --accuracy-bps "
            "and --test-set-digest",
            card=str(card),
        )
    return read_regular_file(card)


def cmd_register(args: argparse.Namespace, out: Output) -> int:
    from registry.services import register_with_card

    result = register_with_card(
        lambda: _client(args),
        read_regular_file(args.file),
        card=_card_bytes(args),
        card_digest=args.card_digest,
        accuracy_bps=args.accuracy_bps,
        test_set_digest=args.test_set_digest,
        parent=args.parent,
    )
    r = result.record
    human = (
        f"{'already registered (identical)' if result.already_registered else 'registered'} "
        f"{r.digest} with accuracy {r.accuracy_percent:.2f} % in block {result.block_number}"
    )
    out.result(result.to_dict(), human)
    return EXIT_OK


def _require_extra(extra: str, *modules: str) -> None:
    """Refuse a command whose optional dependencies this install left out, naming the extra.

    The base install (hash, verify, register, inspect) has no torch or web framework; without
    this check ``registry train`` on it would end in a ModuleNotFoundError traceback.
    """
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigurationError(
            f"`registry {extra}` needs {', '.join(missing)}, which this install lacks; "
            f"install `medical-model-registry[{extra}]` (or [dev])",
            extra=extra,
            missing=missing,
        )


def cmd_train(args: argparse.Namespace, out: Output) -> int:
    _require_extra("train", "torch", "torchvision", "numpy", "safetensors", "tqdm", "sklearn")
    from training.cli import run_train

    # Training errors are InvalidInput already (one tree): they reach the user with their code.
    result = run_train(args)
    data: dict[str, Any] = {
        "checkpoint": str(result.checkpoint_path),
        "card": str(result.card_path),
        "checkpoint_digest": f"sha256:{result.checkpoint_sha256}",
        "card_digest": f"sha256:{result.card_digest}",
        "test_set_digest": f"sha256:{result.test_set_digest}",
        "accuracy_bps": result.accuracy_bps,
        "dataset": result.dataset_name,
        "stand_in_dataset": result.is_stand_in,
    }
    human = (
        f"trained {result.checkpoint_path} on {result.dataset_name}: test accuracy "
        f"{result.accuracy_bps / 100:.2f} %"
    )
    if args.register:
        from registry.services import register_with_card

        # Through the same checks as `registry register`, on the bytes as written to disk.
        registration = register_with_card(
            lambda: _client(args),
            read_regular_file(result.checkpoint_path),
            card=read_regular_file(result.card_path),
            parent=result.parent_digest,
        )
        data["registration"] = registration.to_dict()
        human += f"; registered in block {registration.block_number}"
    out.result(data, human)
    return EXIT_OK


def _explain(verdict: Verdict, name: str) -> str:
    if verdict.verified:
        return f"VERIFIED {name}: {verdict.detail} (chain {verdict.chain_id}, block {verdict.checked_block})"
    return f"NOT VERIFIED {name} [{verdict.reason}]: {verdict.detail}"


def cmd_verify(args: argparse.Namespace, out: Output) -> int:
    from registry.core.policy import Policy
    from registry.verify import verify_digest

    settings = _settings(args)
    policy = Policy(
        min_accuracy_bps=args.min_accuracy_bps
        if args.min_accuracy_bps is not None
        else settings.min_accuracy_bps,
        trusted_registrants=frozenset(a.lower() for a in args.trusted)
        if args.trusted
        else frozenset(settings.trusted_registrants),
    )
    digest = digest_file(args.file)
    from registry.chain.connection import connect

    verdict = verify_digest(connect(settings), digest, policy)
    out.result({"file": str(args.file), **verdict.to_dict()}, _explain(verdict, str(args.file)))
    return EXIT_OK if verdict.verified else EXIT_FAILED


def cmd_revoke(args: argparse.Namespace, out: Output) -> int:
    from registry.services import revoke

    record = revoke(lambda: _client(args), args.digest, args.reason, args.replacement)
    out.result(
        record.to_dict(),
        f"revoked {record.digest} (reason: {RevocationReason.parse(args.reason).label})",
    )
    return EXIT_OK


def cmd_show(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    digest = Digest.parse(args.digest)
    record = client.get(digest)
    if record is None:
        out.result(
            {"digest": str(digest), "registered": False},
            f"{digest} is not registered on chain {client.chain_id}",
        )
        return EXIT_FAILED
    data = {
        **record.to_dict(),
        "lineage": [str(r.digest) for r in client.lineage(digest)],
        "children": [str(d) for d in client.children(digest)],
    }
    state = "VALID" if record.valid else f"REVOKED ({record.revocation.reason.label})"  # type: ignore[union-attr]
    out.result(
        data,
        "\n".join(
            [
                f"{record.digest}  {state}",
                f"  registrant   {record.registrant} at {data['registered_at']} (block {record.registered_block})",
                f"  accuracy     {record.accuracy_percent:.2f} % on test set {record.test_set_digest}",
                f"  model card   {record.card_digest}",
                f"  parent       {record.parent or '(first version)'}",
                f"  children     {', '.join(data['children']) or '(none)'}",
            ]
        ),
    )
    return EXIT_OK


def cmd_history(args: argparse.Namespace, out: Output) -> int:
    events = _client(args).history(Digest.parse(args.digest) if args.digest else None)
    lines = [f"block {e.block_number:>8}  {e.kind:<10} {e.digest}  by {e.actor}" for e in events]
    out.result([e.to_dict() for e in events], "\n".join(lines) or "no events")
    return EXIT_OK


def cmd_list(args: argparse.Namespace, out: Output) -> int:
    valid = True if args.valid else False if args.revoked else None
    records = _client(args).list_models(registrant=args.registrant, valid=valid)
    lines = [
        f"{r.digest}  {'valid  ' if r.valid else 'revoked'}  {r.accuracy_percent:6.2f} %  {r.registrant}"
        for r in records
    ]
    out.result([r.to_dict() for r in records], "\n".join(lines) or "no models")
    return EXIT_OK


def cmd_roles(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    role = Role.parse(args.role)
    if args.action == "grant":
        tx = client.grant_role(role, args.account)
    elif args.action == "remove":
        tx = client.remove_role(role, args.account)
    else:
        held = client.has_role(role, args.account)
        out.result(
            {"role": role.name.lower(), "account": args.account, "held": held},
            f"{args.account} {'holds' if held else 'does not hold'} the {role.name.lower()} role",
        )
        return EXIT_OK if held else EXIT_FAILED
    out.result({"tx_hash": tx}, f"{args.action} {role.name.lower()} for {args.account}: {tx}")
    return EXIT_OK


def cmd_admin(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    if args.action == "transfer":
        if not args.account:
            raise InvalidInput("`registry admin transfer` needs the new admin's address")
        tx = client.transfer_admin(args.account)
        out.result(
            {"tx_hash": tx},
            f"proposed {args.account} as admin; it must run `registry admin accept`",
        )
    elif args.action == "accept":
        tx = client.accept_admin()
        out.result({"tx_hash": tx}, "admin role accepted")
    else:
        admin, pending = client.admin()
        out.result(
            {"admin": admin, "pending_admin": pending},
            f"admin {admin}" + (f", pending {pending}" if pending else ""),
        )
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, out: Output) -> int:
    _require_extra("serve", "fastapi", "uvicorn", "numpy", "safetensors", "torch", "PIL")
    from registry.api.server import run

    run(_settings(args, host=args.host, port=args.port, workers=args.workers))
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, out: Output) -> int:
    from registry.core import audit

    path: Path = args.file or _settings(args).data_dir / "audit.log"
    anchor = None
    if args.anchor:
        seq, _, digest = args.anchor.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise InvalidInput(
                f"--anchor {args.anchor!r} is not SEQ:HASH (an entry number and its 64-hex hash)"
            )
        anchor = (int(seq), digest.lower())
    entries = audit.verify(path, anchor=anchor)
    out.result(
        {"file": str(path), "entries": entries, "intact": True},
        f"audit log {path}: {entries} entries, hash chain intact",
    )
    return EXIT_OK


# --- parser --------------------------------------------------------------------------------


COMMON_FLAGS = ("json", "rpc_url", "contract", "data_dir", "chain_id", "confirmations", "keystore")


def build_parser() -> argparse.ArgumentParser:
    # SUPPRESS defaults let these flags go before or after the command without one position's
    # default overwriting the other's value; main() fills in what was not given.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    g = common.add_argument_group("chain and output")
    g.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    g.add_argument(
        "--rpc-url",
        help="'memory', an http(s) JSON-RPC URL, or unset for the "
        "managed local chain (env REGISTRY_RPC_URL)",
    )
    g.add_argument("--contract", help="registry address (default: the recorded deployment)")
    g.add_argument("--data-dir", type=Path, help="default ~/.model-registry (REGISTRY_DATA_DIR)")
    g.add_argument("--chain-id", type=int, help="refuse any other chain id")
    g.add_argument("--confirmations", type=int, help="blocks a transaction needs (default 1)")
    g.add_argument(
        "--keystore",
        type=Path,
        help="encrypted key file; password from "
        "REGISTRY_KEYSTORE_PASSWORD (default: REGISTRY_PRIVATE_KEY)",
    )

    parser = argparse.ArgumentParser(
        prog="registry", description=__doc__.splitlines()[0], parents=[common]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, handler: Callable[[argparse.Namespace, Output], int], help: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(handler=handler)
        return p

    p = add("chain", cmd_chain, "start, stop or check the managed local anvil node")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--port", type=int, default=8545, help="loopback port (default 8545)")
    p.add_argument("--node-chain-id", type=int, default=31337, help="chain id (default 31337)")

    p = add("deploy", cmd_deploy, "deploy the registry contract and record the deployment")
    p.add_argument("--admin", help="admin address (default: the deploying key)")
    p.add_argument(
        "--grant-self",
        action="store_true",
        help="also give the deploying key the registrar and revoker roles",
    )

    p = add("hash", cmd_hash, "print the SHA-256 of a file, as anchored on chain")
    p.add_argument("file", type=Path)

    p = add("register", cmd_register, "anchor a checkpoint with its accuracy and evidence")
    p.add_argument("file", type=Path, help="the checkpoint (.safetensors)")
    p.add_argument(
        "--accuracy-bps",
        type=int,
        help="test accuracy, basis points (default: the card's; required with --card-digest)",
    )
    p.add_argument(
        "--test-set-digest",
        help="digest of the test split (default: the card's; required with --card-digest)",
    )
    p.add_argument(
        "--card",
        type=Path,
        help="model card JSON, canonical as `registry train` writes it; accuracy and test set "
        "are read from it (default: model_card.json beside FILE)",
    )
    p.add_argument(
        "--card-digest",
        help="digest of a model card kept elsewhere, instead of --card "
        "(then --accuracy-bps and --test-set-digest are required)",
    )
    p.add_argument("--parent", help="digest of the checkpoint this one derives from")

    p = add(
        "train",
        cmd_train,
        "train a LeNet-5 CNN, write checkpoint + model card, optionally register",
    )
    from training.cli import add_train_arguments

    add_train_arguments(p)
    p.add_argument(
        "--register",
        action="store_true",
        help="anchor the checkpoint on chain right after training (default: no)",
    )

    p = add(
        "verify", cmd_verify, "check a checkpoint file against the registry (exit 0 = verified)"
    )
    p.add_argument("file", type=Path)
    p.add_argument("--min-accuracy-bps", type=int, help="policy: minimum accuracy (default 0)")
    p.add_argument(
        "--trusted",
        action="append",
        metavar="ADDRESS",
        help="policy: trusted registrant (repeatable; default: any)",
    )

    p = add("revoke", cmd_revoke, "revoke a checkpoint for good")
    p.add_argument("digest")
    p.add_argument(
        "--reason",
        required=True,
        help="superseded, safety-issue, performance-"
        "degradation, data-problem, security-compromise, regulatory, "
        "registered-in-error, other (or the code)",
    )
    p.add_argument("--replacement", help="digest of the registered checkpoint to use instead")

    p = add("show", cmd_show, "show a checkpoint's record, lineage and children")
    p.add_argument("digest")

    p = add("history", cmd_history, "registrations and revocations, in chain order")
    p.add_argument("digest", nargs="?", help="only this checkpoint (default: all)")

    p = add("list", cmd_list, "list registered checkpoints")
    p.add_argument("--registrant", help="only those registered by this address")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--valid", action="store_true", help="only valid ones")
    state.add_argument("--revoked", action="store_true", help="only revoked ones")

    p = add("roles", cmd_roles, "grant, remove or check registrar/revoker roles (admin only)")
    p.add_argument("action", choices=["grant", "remove", "show"])
    p.add_argument("role", help="registrar or revoker")
    p.add_argument("account", help="0x address")

    p = add("admin", cmd_admin, "show, propose (transfer) or accept the admin role")
    p.add_argument("action", choices=["show", "transfer", "accept"])
    p.add_argument("account", nargs="?", help="new admin, for transfer")

    p = add(
        "serve",
        cmd_serve,
        "run the clinic HTTP service (web page at /, API description at /openapi.json)",
    )
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1, REGISTRY_HOST)")
    p.add_argument("--port", type=int, help="TCP port (default 8000, REGISTRY_PORT)")
    p.add_argument(
        "--workers", type=int, help="worker processes, each with its own inference gate (default 1)"
    )

    p = add("audit", cmd_audit, "check the audit log's hash chain (exit 0 intact, 1 broken)")
    p.add_argument("action", choices=["verify"])
    p.add_argument(
        "file", nargs="?", type=Path, help="the log (default: audit.log in the data directory)"
    )
    p.add_argument(
        "--anchor",
        metavar="SEQ:HASH",
        help="an entry known from outside the file (detects lines cut from the end)",
    )

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in COMMON_FLAGS:
        if not hasattr(args, name):
            setattr(args, name, False if name == "json" else None)
    out = Output(args.json)
    try:
        return int(args.handler(args, out))
    except (InvalidInput, ConfigurationError) as exc:
        out.error(exc)
        return EXIT_USAGE
    except RegistryError as exc:
        out.error(exc)
        return EXIT_FAILED
    except FileNotFoundError as exc:
        out.error(InvalidInput(f"no such file: {exc.filename}; check the path"))
        return EXIT_USAGE
    except IsADirectoryError as exc:
        out.error(InvalidInput(f"{exc.filename} is a directory, not a file"))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
