"""The host names this service answers to, checked against every request's ``Host`` header.

DNS rebinding: a page on a name an attacker controls (``evil.example``) first resolves to the
attacker's server, then, once loaded, to this service's address. The browser still treats the
page and ``http://evil.example:8000`` as one origin, so the page may read whatever anonymous users
can read here (verdicts, checkpoint downloads). Every such request carries ``Host:
evil.example``: answering only to known names closes the hole.

``REGISTRY_ALLOWED_HOSTS`` lists the names (case-insensitive; a port in the header is ignored):
``clinic.example`` exactly, ``.example.org`` for that domain and every name under it, ``*`` for
any name (the check off: only behind a proxy that checks ``Host`` itself). Unset, the service
answers to its bind host and to localhost, 127.0.0.1 and ::1; bound to every interface (0.0.0.0,
::), also to the machine's own host names and to any IP address literal, since a page can only
be rebound through a *name*: a request whose ``Host`` is an address was sent to that address.

A request without ``Host`` (HTTP/1.0) is let through: no browser sends one, and only browsers can
be rebound.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable

from registry.config import Settings
from registry.errors import HostNotAllowed

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})
# What a Host header may hold: a DNS name, an IPv4 address or a bracketed IPv6 one, and a port.
_HOST_HEADER = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+)(?::(?P<port>\d{1,5}))?")


class AllowedHosts:
    """Which ``Host`` header values are this service's own names."""

    def __init__(self, names: Iterable[str], *, any_address: bool = False) -> None:
        self.names = tuple(dict.fromkeys(_bare(name) for name in names))
        self.any_address = any_address
        self._exact = frozenset(n for n in self.names if not n.startswith(".") and n != "*")
        self._domains = tuple(n for n in self.names if n.startswith("."))
        self._anything = "*" in self.names

    @classmethod
    def from_settings(cls, settings: Settings) -> AllowedHosts:
        if settings.allowed_hosts:
            return cls(settings.allowed_hosts)
        if settings.host.strip() in WILDCARD_BINDS:
            return cls([*LOCAL_NAMES, *_own_host_names()], any_address=True)
        return cls([settings.host, *LOCAL_NAMES])

    def allows(self, host_header: str) -> bool:
        """True if ``host_header`` (a ``Host`` value, port and all) names this service."""
        match = _HOST_HEADER.fullmatch(host_header.strip())
        if match is None:
            return False
        if self._anything:
            return True
        host = _bare(match["host"])
        if host in self._exact:
            return True
        if self.any_address and _is_address(host):
            return True
        return any(host == domain[1:] or host.endswith(domain) for domain in self._domains)

    def refusal(self, host_header: str | None) -> HostNotAllowed | None:
        """The refusal for a request with this ``Host`` header, or None when it may pass."""
        if host_header is None or self.allows(host_header):
            return None
        return HostNotAllowed(host_header)

    def describe(self) -> str:
        shown = ", ".join(self.names)
        return shown + (" and any IP address" if self.any_address else "")


def _bare(name: str) -> str:
    """Lower case, without a trailing dot or IPv6 brackets: the form names are compared in."""
    name = name.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _own_host_names() -> list[str]:
    # getfqdn falls back to the short name by itself when no resolver answers.
    return [name for name in (socket.gethostname(), socket.getfqdn()) if name]
