"""A tiny JSON-RPC client over plain HTTP, and the wait for a starting node to answer.

The dev tooling needs a handful of calls (``eth_chainId`` while a node starts, ``eth_blockNumber``
for ``registry chain status``, ``evm_snapshot`` and friends in tests) and must work before, and
without, a web3 client: the standard library is enough.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from registry.devnet.processes import POLL_S, log_tail
from registry.errors import ChainError, ChainUnavailable, ConfigurationError

__all__ = ["json_rpc", "wait_ready"]

# An explicit empty ProxyHandler: an http_proxy in the environment must never see loopback calls.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def json_rpc(url: str, method: str, params: Sequence[Any] = (), *, timeout: float = 5.0) -> Any:
    """Call one JSON-RPC method over plain HTTP and return its ``result``.

    Raises ``ChainUnavailable`` when nothing answers, ``ChainError`` (details: ``method``,
    ``rpc_error``) when the node answers with an error object.
    """
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            reply = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ChainUnavailable(url, f"{method}: {exc}") from exc
    if "error" in reply:
        error = reply["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise ChainError(
            f"{method} failed on {url}: {message}", method=method, rpc_error=error, endpoint=url
        )
    return reply.get("result")


def wait_ready(
    url: str,
    chain_id: int,
    timeout: float,
    log_path: Path,
    exited: Callable[[], int | str | None],
) -> None:
    """Poll ``eth_chainId`` until it answers; ``exited()`` returns the exit status once it died.

    The process is checked after each answer too: an answer from a process that has died came
    from someone else holding the port.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            answered = json_rpc(url, "eth_chainId", timeout=0.5)
        except ChainError as exc:
            _raise_if_exited(exited(), url, log_path)
            if time.monotonic() >= deadline:
                raise ChainUnavailable(
                    url,
                    f"anvil was still starting after {timeout:g} s; "
                    f"last lines of {log_path}:\n{log_tail(log_path)}",
                ) from exc
            time.sleep(POLL_S)
            continue
        _raise_if_exited(exited(), url, log_path)
        actual = int(answered, 16)
        if actual != chain_id:
            raise ConfigurationError(
                f"the node answering on {url} serves chain id {actual}, not {chain_id}; "
                "another node may hold the port, or the state file was made for another chain",
                url=url,
                expected=chain_id,
                actual=actual,
            )
        return


def _raise_if_exited(code: int | str | None, url: str, log_path: Path) -> None:
    if code is None:
        return
    tail = log_tail(log_path)
    raise ConfigurationError(
        f"anvil exited (status {code}) before answering on {url}. Last lines of {log_path}:\n{tail}",
        url=url,
        returncode=code,
        log_path=str(log_path),
        log_tail=tail,
    )
