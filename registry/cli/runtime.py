"""The commands around running models: train (the [train] extra), serve (the [serve] extra), and
audit, which checks the hash-chained log the service writes.

train and serve import their stack only once they run, after ``_require_extra`` has checked that
the install has it: the base install lists them in ``--help``, says which extra they lack, and
never imports torch, numpy or FastAPI for the other commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from registry.cli.output import EXIT_OK, AddCommand, Output, client_for, settings_for
from registry.core.digest import read_regular_file
from registry.errors import ConfigurationError, InvalidInput


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
    _require_extra("serve", "fastapi", "uvicorn", "numpy", "safetensors", "torch", "PIL")
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
    from registry.core import audit

    path: Path = args.file or settings_for(args).data_dir / "audit.log"
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


def _add_audit(add: AddCommand) -> None:
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


def add_commands(add: AddCommand) -> None:
    """Add train, serve and audit, in the order ``registry --help`` lists them."""
    for add_one in (_add_train, _add_serve, _add_audit):
        add_one(add)
