"""What a browser needs to be told so that the clinic page cannot be turned against its user.

The service answers browsers (the page at ``/``) and scripts (the CLI, curl) on the same routes.
A browser is the one client that another site can steer: a page elsewhere can frame this one, or
make a clinic user's browser POST a form or a ``fetch`` here, and the browser would send it. So:

- every response, errors, 404s and static files included, carries a Content-Security-Policy that
  lets the page load only its own files (no inline script or style, no CDN, no framing, no form
  posted elsewhere), plus ``nosniff``, ``DENY`` framing, no referrer and an own browsing context;
- a request whose ``Host`` is not one of this service's names is refused with 400
  ``host_not_allowed`` before anything else (DNS rebinding: ``hosts.py``);
- a state-changing or costly request (POST, PUT, PATCH, DELETE) that another site's page started
  is refused with 403 ``cross_site_request`` before its body is read, unless it carries an
  ``X-API-Key``. Browsers say who started a request in ``Sec-Fetch-Site`` (which a page cannot
  set); older ones, and plain-HTTP hosts other than localhost, send only ``Origin``, which is then
  compared with the request's own scheme://host. A request with neither header is not a browser's
  cross-site request (curl, scripts, the CLI) and passes. A page elsewhere cannot add
  ``X-API-Key`` without a CORS preflight this service never grants, so a request that carries
  one is a script's (its key is still checked by the route).

The middleware must sit outside every other layer, Starlette's 500 handler included, or a 500 would
go out without the headers: ``app.create_app`` wraps the built stack in it.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api.hosts import AllowedHosts
from registry.api.limits import send_error_and_close
from registry.errors import CrossSiteRequest

log = logging.getLogger("registry.api")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
_SECURITY_HEADER_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)

# GET and HEAD only read (and the routes behind them are cheap); these change state or cost work.
GUARDED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class BrowserHardeningMiddleware:
    def __init__(self, app: ASGIApp, allowed_hosts: AllowedHosts) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Ours replace any a route set, so no response can weaken the policy.
                kept = [
                    (name, value)
                    for name, value in message.get("headers", ())
                    if name.lower() not in _SECURITY_HEADER_NAMES
                ]
                message = {**message, "headers": [*kept, *SECURITY_HEADERS]}
            await send(message)

        wrong_host = self.allowed_hosts.refusal(Headers(scope=scope).get("host"))
        if wrong_host is not None:
            log.warning("refused a request for host %r (%s)", wrong_host.host, scope.get("path"))
            await send_error_and_close(send_hardened, wrong_host)
            return
        refusal = cross_site_refusal(scope)
        if refusal is not None:
            log.warning(
                "refused a cross-site %s %s (origin %s)",
                refusal.method,
                scope.get("path"),
                refusal.origin,
            )
            await send_error_and_close(send_hardened, refusal)
            return
        await self.app(scope, receive, send_hardened)


def cross_site_refusal(scope: Scope) -> CrossSiteRequest | None:
    """The refusal for a guarded request another site's page started without a key, else None."""
    method = scope.get("method", "")
    if method not in GUARDED_METHODS:
        return None
    headers = Headers(scope=scope)
    if headers.get("x-api-key"):
        return None
    fetch_site = headers.get("sec-fetch-site")
    origin = headers.get("origin")
    if fetch_site is not None:
        # The browser's own word wins; "same-site" (a sibling host of the same site) passes.
        cross = fetch_site.strip().lower() == "cross-site"
    else:
        # An origin that cannot be parsed ("null": a sandboxed frame, a data: URL) is foreign.
        claimed = _origin_of(origin) if origin is not None else None
        cross = origin is not None and (claimed is None or claimed != _own_origin(scope, headers))
    return CrossSiteRequest(method, origin, fetch_site) if cross else None


def _origin_of(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an ``Origin`` header; None for ``null`` or anything malformed."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme not in _DEFAULT_PORTS:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _own_origin(scope: Scope, headers: Headers) -> tuple[str, str, int] | None:
    """This request's own origin: its scheme (the proxy's, where uvicorn trusts the proxy) and the
    host it was sent to."""
    scheme = str(scope.get("scheme", "http"))
    host = headers.get("host")
    if host is None:
        server = scope.get("server")
        if not server:
            return None
        host = f"{server[0]}:{server[1]}"
    return _origin_of(f"{scheme}://{host}")
