"""The ``registry serve`` and ``registry audit verify`` subcommands, wired into ``registry.cli``.

``build_parser`` calls ``add_serve_parser(sub, common)`` and ``add_audit_parser(sub, common)``;
handlers follow the CLI's convention ``handler(args, out) -> exit code``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from registry.config import Settings, get_settings
from registry.errors import InvalidInput

if TYPE_CHECKING:
    from registry.cli import Output

EXIT_OK = 0


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


def cmd_serve(args: argparse.Namespace, out: Output) -> int:
    from registry.serve import run

    settings = _settings(args, host=args.host, port=args.port, workers=args.workers)
    run(settings)
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, out: Output) -> int:
    from registry import audit

    path: Path = args.file or _settings(args).data_dir / "audit.log"
    anchor = _parse_anchor(args.anchor) if args.anchor else None
    entries = audit.verify(path, anchor=anchor)
    out.result(
        {"file": str(path), "entries": entries, "intact": True},
        f"audit log {path}: {entries} entries, hash chain intact",
    )
    return EXIT_OK


def _parse_anchor(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise InvalidInput(
            f"--anchor {text!r} is not SEQ:HASH (an entry number and its 64-hex hash)",
            anchor=text,
        )
    return int(seq), digest.lower()


def add_serve_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    description = (
        "run the clinic HTTP service (web page at /, API description at /openapi.json); "
        "settings from REGISTRY_* variables, these flags override them"
    )
    p = sub.add_parser("serve", help=description, description=description, parents=[common])
    p.set_defaults(handler=cmd_serve)
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1, REGISTRY_HOST)")
    p.add_argument("--port", type=int, help="TCP port (default 8000, REGISTRY_PORT)")
    p.add_argument(
        "--workers",
        type=int,
        help="worker processes, each with its own inference gate (default 1, REGISTRY_WORKERS)",
    )


def add_audit_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    description = "check the audit log's hash chain (exit 0 intact, 1 broken)"
    p = sub.add_parser("audit", help=description, description=description, parents=[common])
    p.set_defaults(handler=cmd_audit)
    p.add_argument("action", choices=["verify"])
    p.add_argument(
        "file", nargs="?", type=Path, help="the log (default: audit.log in the data directory)"
    )
    p.add_argument(
        "--anchor",
        metavar="SEQ:HASH",
        help="an entry known from outside the file (detects lines cut from the end)",
    )
