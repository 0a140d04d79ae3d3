"""Every refused request leaves a trace: the ones no route records are counted here.

Routes record what they do with ``Services.audited``. A request refused before that, by a layer
in front of the route (the browser hardening's 400/403, the body limits' 408/413), by the key
check (401/403), or by parameter and body validation (400/422), reaches no route's audit entry.
This outermost middleware watches each response's status and, for a refusal that nothing
recorded, counts it in the process's ``RefusalCounter`` (written per window: ``audit_refusals``).

The layers in between tell it what they know through a per-request trace held in a context
variable: ``note_audited`` (a route wrote the entry: nothing to add), ``note_outcome`` (the error
code the response carries, from ``errors.error_response``), ``note_caller`` (the key id, once the
key is known). A route runs in a copy of the request's context, in a thread or not; the trace
object itself is shared, so what it notes is seen here.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# What a refusal is; 404 and 405 are not counted (a wrong URL is not an attempt on anything).
REFUSED_STATUSES = frozenset({400, 401, 403, 408, 413, 422})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass
class RequestTrace:
    status: int = 0
    audited: bool = False
    outcome: str | None = None
    caller: str | None = None


_trace: ContextVar[RequestTrace | None] = ContextVar("registry_request_trace", default=None)


def note_audited() -> None:
    """The request's audit entry is written: a refusal it answers needs no count."""
    trace = _trace.get()
    if trace is not None:
        trace.audited = True


def note_outcome(code: str) -> None:
    """The error code the response is about to carry."""
    trace = _trace.get()
    if trace is not None:
        trace.outcome = code


def note_caller(caller_id: str) -> None:
    """Who the request's key says the caller is (a key id); else the address is counted."""
    trace = _trace.get()
    if trace is not None:
        trace.caller = caller_id


class RefusalAuditMiddleware:
    """Counts the refusals nothing recorded. ``owner`` is the app: its routes name the route
    (the template, never the raw path) and its ``state.services`` holds the counter."""

    def __init__(self, app: ASGIApp, owner: FastAPI) -> None:
        self.app = app
        self.owner = owner
        self._templates: list[tuple[str, re.Pattern[str]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace = RequestTrace()
        token = _trace.set(trace)

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                trace.status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            _trace.reset(token)
            if trace.status in REFUSED_STATUSES and not trace.audited:
                self._count(scope, trace)

    def _count(self, scope: Scope, trace: RequestTrace) -> None:
        services = getattr(self.owner.state, "services", None)
        if services is None:  # not started yet (or stopped): nothing to count into
            return
        client = scope.get("client")
        who = trace.caller or services.keys.identify(None, client[0] if client else None).id
        outcome = trace.outcome or f"http_{trace.status}"
        services.refusals.record(outcome, trace.status, who, self._route(scope))

    def _route(self, scope: Scope) -> str:
        """``METHOD /template`` of the route the request was for (``*``: no route): the paths
        the API describes, never the raw path, so the values are a small fixed set."""
        method = scope.get("method", "")
        method = method if method in _METHODS else "OTHER"
        if self._templates is None:
            paths = self.owner.openapi().get("paths", {})
            self._templates = [
                (template, re.compile(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))))
                for template in paths
            ]
        path = scope.get("path", "")
        for template, pattern in self._templates:
            if pattern.fullmatch(path):
                return f"{method} {template}"
        return f"{method} *"
