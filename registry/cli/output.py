"""What every command of the ``registry`` package shares: how results are written, the exit codes,
and the step from parsed flags to Settings and a chain client.

Every command module imports this; beyond it, a command module uses another's public helper only
where both commands must read their input the same way (``records.card_bytes`` for the card a
registration reads, ``batch``'s manifest and proof helpers, ``runtime.require_extra``), and none
imports ``main``. The chain client's import stays inside ``client_for``, which keeps
``registry hash`` free of web3 until a command actually talks to a chain.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from registry.config import Settings, get_settings
from registry.errors import RegistryError

if TYPE_CHECKING:
    from registry.chain.client import RegistryClient
    from registry.chain.transactions import WaitProgress

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

    def progress(self, line: str) -> None:
        """A note on long work: on stderr, so a --json answer on stdout stays one JSON value."""
        print(line, file=sys.stderr, flush=True)


def describe_wait(p: WaitProgress) -> str:
    """One line on a transaction's wait, e.g. ``waiting for 2 confirmations of 0xabc…``."""
    clock = f"{p.waited_s:.0f} s of {p.timeout_s:g} s"
    if p.mined_block is None:
        return f"waiting for {p.tx_hash[:10]}… to be mined ({clock})"
    line = (
        f"waiting for {p.confirmations} confirmations of {p.tx_hash[:10]}… "
        f"({p.confirmed}/{p.confirmations}, mined in block {p.mined_block}, chain at block "
        f"{p.head}; {clock})"
    )
    if p.mines_on_demand:
        line += (
            ": this node mines a block only when a transaction arrives, so no further block "
            "will come by itself; mine blocks on it, or use --confirmations 1"
        )
    return line


# A command's handler: parsed flags and the output in, exit code out.
Handler = Callable[[argparse.Namespace, Output], int]
# build_parser's helper that adds one sub-command (name, handler, help) and returns its parser;
# each command module's add_commands receives it and adds its own arguments to what it returns.
AddCommand = Callable[[str, Handler, str], argparse.ArgumentParser]


def settings_for(args: argparse.Namespace, **extra: object) -> Settings:
    """Settings from REGISTRY_* variables, with the common flags that were given on top."""
    return get_settings(
        rpc_url=args.rpc_url,
        contract_address=args.contract,
        data_dir=args.data_dir,
        chain_id=args.chain_id,
        confirmations=args.confirmations,
        keystore=args.keystore,
        **extra,
    )


def client_for(args: argparse.Namespace) -> RegistryClient:
    """The identity-checked chain client that the flags and environment point at."""
    from registry.chain.connection import connect

    return connect(settings_for(args))


def writer_for(args: argparse.Namespace, out: Output) -> RegistryClient:
    """``client_for``, with each wait for its transactions' confirmations shown on stderr."""
    client = client_for(args)
    client.transactions.progress = lambda p: out.progress(describe_wait(p))
    return client
