"""How a chain endpoint is shown: ``scheme://host[:port]``, never the rest of its URL.

Hosted JSON-RPC providers put the credentials in the URL itself (``https://user:pass@host``,
``/v3/<project key>``, ``?apikey=...``), so ``REGISTRY_RPC_URL`` is a secret as a whole. Error
messages, ``/health``, CLI answers and log lines name the node only as this function shows it;
the full URL goes to the HTTP provider and nowhere else.
"""

from __future__ import annotations

from urllib.parse import urlsplit

MEMORY = "memory"  # the endpoint name of an in-process eth-tester chain
UNPARSEABLE = "(an endpoint that is not a URL)"


def redact_endpoint(url: str) -> str:
    """``url`` reduced to ``scheme://host[:port]`` ("memory" stays "memory").

    User, password, path, query and fragment are dropped; an IPv6 host keeps its brackets; a
    port is shown only when the URL names one. A value with no scheme or host is not shown at
    all (it could be anything, a key included).
    """
    if url == MEMORY:
        return MEMORY
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname  # lower-cased, without user:password@ and without brackets
        port = parts.port  # ValueError for a port that is not a number in range
    except ValueError:
        return UNPARSEABLE
    if not parts.scheme or not host:
        return UNPARSEABLE
    shown_host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{shown_host}" + (f":{port}" if port is not None else "")
