"""The parser and the entry point: the flags every command shares, and how errors become exit codes.

The commands themselves live in records, admin, runtime and evaluate; this module only assembles
them (``registry --help`` lists the operator commands, then the record commands, then the runtime
ones, then evaluate) and runs the chosen handler under the one error policy of the command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from registry.cli import (
    admin,
    attest,
    batch,
    delegate,
    evaluate,
    oms,
    proof,
    pull,
    receipts,
    records,
    runtime,
)
from registry.cli.output import EXIT_FAILED, EXIT_USAGE, Handler, Output
from registry.errors import ConfigurationError, InvalidInput, RegistryError

COMMON_FLAGS = ("json", "rpc_url", "contract", "data_dir", "chain_id", "confirmations", "keystore")


def build_parser() -> argparse.ArgumentParser:
    # The help's description is the first line of the package docstring, as it always was.
    import registry.cli

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
        prog="registry",
        description=(registry.cli.__doc__ or "").splitlines()[0],
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(handler=handler)
        return p

    for group in (
        admin,
        records,
        batch,
        delegate,
        proof,
        pull,
        oms,
        runtime,
        receipts,
        attest,
        evaluate,
    ):
        group.add_commands(add)
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
