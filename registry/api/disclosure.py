"""What an error body may tell an HTTP client: nothing about this machine's disk or setup.

The registry's exceptions are written for the operator, and the CLI prints them whole: a store or
audit-log error names its file, a configuration error the data directory or the keystore. A
client of the service (anonymous, perhaps) gets the code, what went wrong in general terms and
the fields that identify what it asked about (the digest); the operator's full message goes to
the service log instead. Chain errors need nothing here: they name the node only as
``registry.core.endpoint.redact_endpoint`` shows it.
"""

from __future__ import annotations

import logging
from typing import Any

from registry.errors import (
    AuditLogCorrupt,
    AuditLogUnavailable,
    ConfigurationError,
    NotFound,
    RegistryError,
    StoreError,
    StoreUnavailable,
)

log = logging.getLogger("registry.api")

_SEE_LOG = "the operator finds the cause in the service log"


def public_error(exc: RegistryError) -> dict[str, Any]:
    """``exc.to_dict()`` as a client may see it (``{"code", "message", "details"}``)."""
    message = _public_message(exc)
    if message is None:
        return exc.to_dict()
    if not isinstance(exc, NotFound):  # a miss is an answer; the others need the operator
        log.error("%s (the response withholds the paths): %s", exc.code, exc.message)
    details = {k: v for k, v in exc.details.items() if k in _PUBLIC_DETAILS.get(type(exc), ())}
    return {"code": exc.code, "message": message, "details": details}


# Per class, the fields that identify the client's object and hold nothing of the server's.
_PUBLIC_DETAILS: dict[type[RegistryError], tuple[str, ...]] = {
    StoreError: ("digest", "kind", "actual"),
    StoreUnavailable: ("digest", "kind", "endpoint"),
    NotFound: ("digest", "kind", "stored"),
    AuditLogCorrupt: ("line",),
    AuditLogUnavailable: (),
    ConfigurationError: (),
}


def _public_message(exc: RegistryError) -> str | None:
    """The client's message for an error whose own message may name server paths; else None."""
    details = exc.details
    if isinstance(exc, StoreUnavailable):
        # The endpoint as a chain error shows its node (scheme://host:port); not the bucket.
        return (
            f"this service cannot reach its checkpoint store at {exc.endpoint} right now, so it "
            f"cannot load the {exc.kind or 'object'}; {_SEE_LOG}. Try again later"
        )
    if isinstance(exc, StoreError):
        kind, digest = details.get("kind", "object"), str(details.get("digest", ""))
        if "actual" in details:
            return (
                f"the stored {kind} sha256:{digest[:12]}… is corrupted (its bytes hash to "
                f"sha256:{str(details['actual'])[:12]}…), so this service will not use it; "
                f"{_SEE_LOG}"
            )
        return (
            f"this service could not read or write the {kind} sha256:{digest[:12]}… in its "
            f"store; {_SEE_LOG}. Try again later"
        )
    if type(exc) is NotFound and "kind" in details:  # the store's miss names the store's path
        return (
            f"this service holds no {details['kind']} sha256:{details.get('digest', '')}; "
            "upload it first, or check the digest"
        )
    if isinstance(exc, AuditLogCorrupt):
        return (
            f"the audit log fails verification at line {exc.line}, so nothing that must be "
            f"recorded is done; {_SEE_LOG}"
        )
    if isinstance(exc, AuditLogUnavailable):
        # The problem is an OS error on a file descriptor (EIO, ENOSPC): no path in it.
        return (
            f"the audit log cannot record ({exc.problem}), so nothing that must be recorded is "
            f"done until it can; {_SEE_LOG}"
        )
    if isinstance(exc, ConfigurationError):
        return f"this service is misconfigured and cannot answer this request; {_SEE_LOG}"
    return None
