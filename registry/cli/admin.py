"""The operator's commands: run the local chain, deploy the contract, manage roles and the admin.

They are kept apart from the record commands because they change who may do what on the
registry, or start processes, rather than read or anchor checkpoints. ``registry chain`` is the
one place a library module reaches ``registry.devnet`` (tests/test_import_rules.py allows only
this package to).
"""

from __future__ import annotations

import argparse
from typing import Any

from registry.cli.output import EXIT_FAILED, EXIT_OK, AddCommand, Output, client_for, settings_for
from registry.core.address import parse_address
from registry.core.records import Role
from registry.errors import ConfigurationError, InvalidInput


def cmd_chain(args: argparse.Namespace, out: Output) -> int:
    # The one library module that starts nodes: `registry chain` is the dev node's front end.
    from registry.devnet import background

    settings = settings_for(args)
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


def _add_chain(add: AddCommand) -> None:
    p = add("chain", cmd_chain, "start, stop or check the managed local anvil node")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--port", type=int, default=8545, help="loopback port (default 8545)")
    p.add_argument("--node-chain-id", type=int, default=31337, help="chain id (default 31337)")


def cmd_deploy(args: argparse.Namespace, out: Output) -> int:
    from registry.chain.connection import make_web3, resolve_endpoint
    from registry.chain.deploy import deploy_and_grant_self, deploy_contract
    from registry.chain.deployments import save_deployment
    from registry.chain.keys import load_account

    settings = settings_for(args)
    admin = None if args.admin is None else parse_address(args.admin, "--admin")
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
    if args.grant_self and admin in (None, account.address):
        _, deployment = deploy_and_grant_self(w3, account, **options)
    else:
        _, deployment = deploy_contract(w3, account, admin=admin, **options)
    path = save_deployment(settings.data_dir, deployment)
    out.result(
        {**deployment.to_dict(), "record": str(path)},
        f"registry deployed at {deployment.address} on chain {deployment.chain_id} "
        f"(block {deployment.block_number}); recorded in {path}",
    )
    return EXIT_OK


def _add_deploy(add: AddCommand) -> None:
    p = add("deploy", cmd_deploy, "deploy the registry contract and record the deployment")
    p.add_argument("--admin", help="admin address (default: the deploying key)")
    p.add_argument(
        "--grant-self",
        action="store_true",
        help="also give the deploying key the registrar and revoker roles",
    )


def cmd_roles(args: argparse.Namespace, out: Output) -> int:
    role = Role.parse(args.role)
    account = parse_address(args.account, "account")
    client = client_for(args)
    if args.action == "grant":
        tx = client.grant_role(role, account)
    elif args.action == "remove":
        tx = client.remove_role(role, account)
    else:
        held = client.has_role(role, account)
        out.result(
            {"role": role.name.lower(), "account": account, "held": held},
            f"{account} {'holds' if held else 'does not hold'} the {role.name.lower()} role",
        )
        return EXIT_OK if held else EXIT_FAILED
    out.result({"tx_hash": tx}, f"{args.action} {role.name.lower()} for {account}: {tx}")
    return EXIT_OK


def _add_roles(add: AddCommand) -> None:
    p = add(
        "roles", cmd_roles, "grant, remove or check registrar/revoker/evaluator roles (admin only)"
    )
    p.add_argument("action", choices=["grant", "remove", "show"])
    p.add_argument(
        "role",
        help="registrar, revoker or evaluator (an evaluator attests its own measurements of "
        "others' checkpoints: `registry attest`)",
    )
    p.add_argument("account", help="0x address")


def cmd_admin(args: argparse.Namespace, out: Output) -> int:
    if args.action == "transfer":
        if not args.account:
            raise InvalidInput("`registry admin transfer` needs the new admin's address")
        account = parse_address(args.account, "account")
        tx = client_for(args).transfer_admin(account)
        out.result(
            {"tx_hash": tx},
            f"proposed {account} as admin; it must run `registry admin accept`",
        )
    elif args.action == "accept":
        tx = client_for(args).accept_admin()
        out.result({"tx_hash": tx}, "admin role accepted")
    else:
        admin, pending = client_for(args).admin()
        out.result(
            {"admin": admin, "pending_admin": pending},
            f"admin {admin}" + (f", pending {pending}" if pending else ""),
        )
    return EXIT_OK


def _add_admin(add: AddCommand) -> None:
    p = add("admin", cmd_admin, "show, propose (transfer) or accept the admin role")
    p.add_argument("action", choices=["show", "transfer", "accept"])
    p.add_argument("account", nargs="?", help="new admin, for transfer")


def add_commands(add: AddCommand) -> None:
    """Add the operator commands, in the order ``registry --help`` lists them."""
    for add_one in (_add_chain, _add_deploy, _add_roles, _add_admin):
        add_one(add)
