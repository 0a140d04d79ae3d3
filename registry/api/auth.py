"""API keys: who may register, revoke, and (optionally) read.

``REGISTRY_API_KEYS`` is ``key:role[+role],...`` with the roles ``registrar``, ``revoker`` and
``reader``. A key travels in the ``X-API-Key`` header. Keys are held only as SHA-256 digests, and a
presented key is compared with *every* configured one in constant time (``hmac.compare_digest`` on
equal-length digests, no early exit), so response timing says nothing about which key was close.
Whoever calls is identified in logs and the audit trail by a key id (the first 8 hex digits of the
key's SHA-256), never by the key itself; an anonymous caller by its IP address: the peer's, or
the one a proxy listed in ``REGISTRY_TRUSTED_PROXIES`` forwarded (``server.uvicorn_options``).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass

from registry.errors import ConfigurationError, Forbidden, Unauthenticated

API_KEY_HEADER = "X-API-Key"
MIN_KEY_LENGTH = 16
# Behind a trusted proxy (REGISTRY_TRUSTED_PROXIES) the client address is read from
# X-Forwarded-For, whose left part is whatever the client wrote there. The audit log refuses a
# value over 512 characters (with a 500), so an anonymous caller's id keeps at most this much of
# it: an IPv6 address has at most 45 characters.
MAX_ADDRESS_CHARS = 64


class ApiRole(enum.StrEnum):
    REGISTRAR = "registrar"
    REVOKER = "revoker"
    READER = "reader"


@dataclass(frozen=True)
class Caller:
    """Who made a request: a key id (``key:1a2b3c4d``) or an address (``ip:127.0.0.1``)."""

    id: str
    roles: frozenset[ApiRole] = frozenset()
    authenticated: bool = False


def key_id(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    id: str
    roles: frozenset[ApiRole]


class KeyRing:
    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = tuple(entries)

    @classmethod
    def parse(cls, spec: str | None) -> KeyRing:
        """Parse ``key:role[+role],...``; a problem is a ConfigurationError naming the key id."""
        entries: list[_Entry] = []
        seen: set[bytes] = set()
        for position, item in enumerate((spec or "").split(","), start=1):
            item = item.strip()
            if not item:
                continue
            key, sep, roles_text = item.rpartition(":")
            if not sep or not key:
                raise ConfigurationError(
                    f"REGISTRY_API_KEYS entry {position} is not 'key:role[+role]'; "
                    "e.g. 's3cret-key-for-ml-team:registrar+revoker'"
                )
            unusable = next((i for i, c in enumerate(key, 1) if not " " <= c <= "~"), None)
            if unusable is not None:
                # HTTP carries header values as ASCII (latin-1 at best): such a key never matches.
                raise ConfigurationError(
                    f"REGISTRY_API_KEYS entry {position}: character {unusable} of the key is not "
                    "printable ASCII, and an X-API-Key header carries only that, so the key could "
                    "never match; use a long random key "
                    "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
            if len(key) < MIN_KEY_LENGTH:
                raise ConfigurationError(
                    f"REGISTRY_API_KEYS entry {position} ({key_id(key)}) is shorter than "
                    f"{MIN_KEY_LENGTH} characters; use a long random key "
                    "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
            roles = set()
            for name in roles_text.split("+"):
                try:
                    roles.add(ApiRole(name.strip().lower()))
                except ValueError:
                    raise ConfigurationError(
                        f"REGISTRY_API_KEYS entry {position} ({key_id(key)}) names the role "
                        f"{name.strip()!r}; use registrar, revoker or reader"
                    ) from None
            digest = hashlib.sha256(key.encode("utf-8")).digest()
            if digest in seen:
                raise ConfigurationError(
                    f"REGISTRY_API_KEYS lists the key {key_id(key)} twice; give it one entry "
                    "with all its roles joined by '+'"
                )
            seen.add(digest)
            entries.append(_Entry(digest, key_id(key), frozenset(roles)))
        return cls(entries)

    @property
    def configured(self) -> bool:
        return bool(self._entries)

    def lookup(self, presented: str) -> _Entry | None:
        """The entry whose key equals ``presented``; every entry is compared, in constant time."""
        candidate = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: _Entry | None = None
        for entry in self._entries:
            if hmac.compare_digest(candidate, entry.digest) and found is None:
                found = entry
        return found

    def identify(self, presented: str | None, client_ip: str | None) -> Caller:
        """The caller behind a request; a presented key that matches nothing is refused."""
        if not presented:
            return Caller(f"ip:{(client_ip or 'unknown')[:MAX_ADDRESS_CHARS]}")
        entry = self.lookup(presented)
        if entry is None:
            if not self.configured:
                raise self._none_configured()
            raise Unauthenticated(
                f"the {API_KEY_HEADER} header holds a key this service does not know; "
                "check the key, or ask the registry operator for one"
            )
        return Caller(entry.id, entry.roles, authenticated=True)

    def require(self, caller: Caller, role: ApiRole | None) -> None:
        """Refuse ``caller`` unless it is authenticated (and holds ``role``, if one is named)."""
        if not caller.authenticated:
            if not self.configured:
                raise self._none_configured()
            raise Unauthenticated(
                f"this endpoint needs an API key in the {API_KEY_HEADER} header"
                + (f" with the {role.value} role" if role else ""),
                role=role.value if role else None,
            )
        if role is not None and role not in caller.roles:
            raise Forbidden(
                f"the key {caller.id} does not hold the {role.value} role needed here; ask the "
                f"registry operator to add it to REGISTRY_API_KEYS",
                key_id=caller.id,
                role=role.value,
            )

    @staticmethod
    def _none_configured() -> Unauthenticated:
        return Unauthenticated(
            "this endpoint needs an API key, and none is configured on this service; "
            "the operator sets REGISTRY_API_KEYS ('key:role[+role],...')"
        )
