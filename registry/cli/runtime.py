"""The commands around running models: train (the [train] extra), serve (the [serve] extra), and
audit, which checks, anchors and rotates the keyed hash-chained log the service writes.

train and serve import their stack only once they run, after ``require_extra`` has checked that
the install has it: the base install lists them in ``--help``, says which extra they lack, and
never imports torch, numpy or FastAPI for the other commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.cli.output import (
    EXIT_FAILED,
    EXIT_OK,
    AddCommand,
    Output,
    client_for,
    settings_for,
)
from registry.core.address import parse_address
from registry.core.digest import read_regular_file
from registry.errors import ConfigurationError, InvalidInput

if TYPE_CHECKING:
    from registry.core.audit_chain import Seal
    from registry.core.audit_key import AuditKey


def require_extra(extra: str, *modules: str, command: str | None = None) -> None:
    """Refuse a command whose optional dependencies this install left out, naming the extra.

    The base install (hash, verify, register, inspect) has no torch or web framework; without
    this check ``registry train`` on it would end in a ModuleNotFoundError traceback.
    ``command`` is the command's name where it is not the extra's (``evaluate`` needs ``train``).
    """
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigurationError(
            f"`registry {command or extra}` needs {', '.join(missing)}, which this install lacks; "
            f"install `medical-model-registry[{extra}]` (or [dev])",
            extra=extra,
            missing=missing,
        )


def cmd_train(args: argparse.Namespace, out: Output) -> int:
    require_extra("train", "torch", "torchvision", "numpy", "safetensors", "tqdm", "sklearn")
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
            lambda: client_for(args),
            read_regular_file(result.checkpoint_path),
            card=read_regular_file(result.card_path),
            parent=result.parent_digest,
        )
        data["registration"] = registration.to_dict()
        human += f"; registered in block {registration.block_number}"
    out.result(data, human)
    return EXIT_OK


def _add_train(add: AddCommand) -> None:
    p = add(
        "train",
        cmd_train,
        "train a LeNet-5 CNN, write checkpoint + model card, optionally register",
    )
    # training.cli imports no torch at module level: its arguments are defined without the stack.
    from training.cli import add_train_arguments

    add_train_arguments(p)
    p.add_argument(
        "--register",
        action="store_true",
        help="anchor the checkpoint on chain right after training (default: no)",
    )


def cmd_serve(args: argparse.Namespace, out: Output) -> int:
    require_extra("serve", "fastapi", "uvicorn", "numpy", "safetensors", "torch", "PIL")
    from registry.api.server import run

    run(settings_for(args, host=args.host, port=args.port, workers=args.workers))
    return EXIT_OK


def _add_serve(add: AddCommand) -> None:
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


def cmd_audit(args: argparse.Namespace, out: Output) -> int:
    from registry.core import audit_chain, audit_key, audit_rotate

    settings = settings_for(args, audit_key_file=args.key_file)
    path: Path = args.file or settings.data_dir / "audit.log"
    # The service keeps its key beside its log unless REGISTRY_AUDIT_KEY_FILE says otherwise.
    key_file = audit_key.key_path(settings.audit_key_file, path.parent)
    if args.action == "rotate":
        report, seal = audit_rotate.rotate(path, audit_key.load_key(key_file, create=True))
        keyed = f"keyed with key id {report.key_id}" if report.key_id else "unkeyed"
        out.result(
            {"file": str(path), "sealed": {**seal.fields(), "entries": report.entries}},
            f"sealed {path} ({report.entries} entries, {keyed}, chain intact) as "
            f"{path.parent / seal.file}; {path} now starts a keyed log whose first line seals it",
        )
        return EXIT_OK
    if args.unkeyed and args.action != "verify":
        raise InvalidInput("--unkeyed checks an unkeyed log with `audit verify` only")
    if args.chain and args.action != "verify":
        raise InvalidInput("--chain checks the anchors of a log with `audit verify` only")
    key = None if args.unkeyed else audit_key.load_key(key_file)
    report = audit_chain.verify(path, key, anchor=_parse_anchor(args.anchor))
    head = report.head
    if args.action == "head":
        out.result(
            {
                "file": str(path),
                "seq": head.seq,
                "hash": head.hash,
                "time": head.time,
                "key_id": head.key_id,
                "anchor": head.anchor,
            },
            f"{head.anchor} {head.time} key {head.key_id}",
        )
        return EXIT_OK
    data: dict[str, Any] = {
        "file": str(path),
        "entries": report.entries,
        "intact": True,
        "key_id": report.key_id,
        "head": head.anchor,
    }
    human = f"audit log {path}: {report.entries} entries, hash chain intact"
    if key is None:
        human += (
            "; UNKEYED (a log of the release before keyed chains): anyone can recompute such a "
            "chain, so only a published head (--anchor) or the seal of the keyed log that "
            "replaced it vouches for it"
        )
    else:
        human += f", keyed (key id {report.key_id}); head {head.anchor}"
    if report.seal is not None and key is not None:
        data["sealed"], human = _check_sealed(path, report.seal, key, human)
    if args.chain:
        data["chain"], line, holds = _check_chain_anchors(args, path)
        out.result(data, f"{human}\n{line}")
        return EXIT_OK if holds else EXIT_FAILED
    out.result(data, human)
    return EXIT_OK


def _check_chain_anchors(args: argparse.Namespace, log: Path) -> tuple[dict[str, Any], str, bool]:
    """Every anchor ``--service`` made (the contract's AuditLogAnchored events) against the local
    log's tree at its size, and each against the one before (registry.core.receipts)."""
    from registry.chain.audit_anchor import AuditAnchors
    from registry.core.receipts import check_anchors

    if not args.service:
        raise InvalidInput(
            "--chain needs --service ADDRESS: the account that anchors this log (the service's "
            "/health names it as audit_anchor.address)"
        )
    service = parse_address(args.service, "--service")
    anchors = AuditAnchors(client_for(args), None).events(service)
    checks = check_anchors(log, [(a.size, a.root, a.anchored_block) for a in anchors])
    bad = [c for c in checks if c.problem is not None]
    data = {"service": service, "anchors": [c.to_dict() for c in checks], "intact": not bad}
    if not checks:
        line = f"{service} has anchored nothing of this log on this chain yet"
    elif bad:
        line = (
            f"the anchor of {bad[0].size} entries (block {bad[0].block}) does NOT match the "
            f"log: {bad[0].problem}"
        )
    else:
        line = (
            f"{len(checks)} anchors of {service} match the log (the latest: {checks[-1].size} "
            f"entries, block {checks[-1].block}), each an extension of the one before"
        )
    return data, line, not bad


def _parse_anchor(text: str | None) -> tuple[int, str] | None:
    if not text:
        return None
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise InvalidInput(
            f"--anchor {text!r} is not SEQ:HASH (an entry number and its 64-hex hash, "
            "as `registry audit head` prints them)"
        )
    return int(seq), digest.lower()


def _check_sealed(path: Path, seal: Seal, key: AuditKey, human: str) -> tuple[dict[str, Any], str]:
    """Check the log ``path``'s header seals, when it is beside it; say so when it is not."""
    from registry.core.audit_rotate import check_sealed

    found = (path.parent / seal.file).is_file()
    if found:
        check_sealed(path, seal, key)  # raises AuditLogCorrupt naming the sealed file's line
        human += f"; the log it replaced, {seal.file} ({seal.entries} entries), matches its seal"
    else:
        command = f"registry audit verify {seal.file} --anchor {seal.entries}:{seal.head}"
        human += (
            f"; the log it replaced, {seal.file}, is not beside it: where it is kept, "
            f"`{command}{'' if seal.key_id else ' --unkeyed'}` and its SHA-256 must be "
            f"{seal.sha256}"
        )
    return {**seal.fields(), "found": found, "intact": True if found else None}, human


def _add_audit(add: AddCommand) -> None:
    p = add(
        "audit",
        cmd_audit,
        "check the audit log's keyed hash chain (exit 0 intact, 1 broken), print its head for "
        "anchoring elsewhere, or rotate it",
    )
    p.add_argument(
        "action",
        choices=["verify", "head", "rotate"],
        help="verify: check every line (and the log it replaced, if beside it); head: check, "
        "then print the last entry as SEQ:HASH; rotate: check, keep the file under a new name "
        "and start a keyed log whose first line seals it (how an unkeyed log of the release "
        "before keys is continued)",
    )
    p.add_argument(
        "file", nargs="?", type=Path, help="the log (default: audit.log in the data directory)"
    )
    p.add_argument(
        "--anchor",
        metavar="SEQ:HASH",
        help="an entry published earlier (`registry audit head`): detects lines cut from the end",
    )
    p.add_argument(
        "--key-file",
        type=Path,
        help="the key the log's chain is keyed with (default REGISTRY_AUDIT_KEY_FILE, else "
        "audit.key beside the log)",
    )
    p.add_argument(
        "--unkeyed",
        action="store_true",
        help="check an unkeyed log of the release before keyed chains (default: no)",
    )
    p.add_argument(
        "--chain",
        action="store_true",
        help="verify only: also check every root --service anchored on chain against this log, "
        "and consecutive anchors against each other (default: no)",
    )
    p.add_argument(
        "--service",
        metavar="ADDRESS",
        help="with --chain: the account that anchors the log (pinned, as the service's /health "
        "names it)",
    )


def add_commands(add: AddCommand) -> None:
    """Add train, serve and audit, in the order ``registry --help`` lists them."""
    for add_one in (_add_train, _add_serve, _add_audit):
        add_one(add)
