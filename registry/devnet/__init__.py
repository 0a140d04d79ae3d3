"""Local processes for the demo, the scripts and the tests: anvil nodes and the registry service.

No library module imports this package (a test enforces it) except ``registry.cli``, whose
``registry chain start|stop|status`` drives the background node. A client finds that node through
``registry.core.nodeinfo`` instead, so the library never depends on the tooling that starts it.

    accounts    the public dev mnemonic and keys (PUBLIC: a local chain only)
    binary      finding the anvil executable (``npm ci``'s, an override, or PATH)
    processes   free loopback ports, process groups, SIGTERM-then-SIGKILL stops, log tails
    rpc         a standard-library JSON-RPC call, and the wait for a starting node
    node        ``AnvilNode``: a node its owner starts and stops; the state file's checks
    background  the detached node of ``registry chain``, its lock and info files
    service     ``start_service``: ``registry serve`` on a free port, healthy, then stopped

POSIX only (signals, process groups, ``fcntl``), like the rest of the local tooling.
"""

from registry.devnet.accounts import DEV_ADDRESSES, DEV_MNEMONIC, DEV_PRIVATE_KEYS
from registry.devnet.background import (
    DEFAULT_PORT,
    background_status,
    start_background,
    stop_background,
)
from registry.devnet.binary import ENV_ANVIL_BIN, find_anvil
from registry.devnet.node import DEFAULT_CHAIN_ID, LOG_FILE, STATE_FILE, AnvilNode
from registry.devnet.processes import free_port
from registry.devnet.rpc import json_rpc
from registry.devnet.service import ServiceProcess, start_service

__all__ = [
    "DEFAULT_CHAIN_ID",
    "DEFAULT_PORT",
    "DEV_ADDRESSES",
    "DEV_MNEMONIC",
    "DEV_PRIVATE_KEYS",
    "ENV_ANVIL_BIN",
    "LOG_FILE",
    "STATE_FILE",
    "AnvilNode",
    "ServiceProcess",
    "background_status",
    "find_anvil",
    "free_port",
    "json_rpc",
    "start_background",
    "start_service",
    "stop_background",
]
