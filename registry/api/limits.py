"""A request body limit, in bytes and in time, enforced while the body streams in, for every route
and content type.

A client can announce a size (``Content-Length``) or not (chunked transfer). Either way the service
must stop reading once the limit is passed instead of buffering a gigabyte first, and that must
hold for multipart uploads too, whose parser sits inside FastAPI. So this is plain ASGI middleware
around the whole app:

- a ``Content-Length`` over the limit is answered 413 before a byte of the body is read, and one
  next to a ``Transfer-Encoding`` 400 (the request's end would be ambiguous);
- otherwise ``receive`` is wrapped and counts bytes as they arrive; the message that passes the
  limit raises ``PayloadTooLarge`` instead of being delivered, so at most the limit plus one
  network chunk is ever held;
- the whole body must arrive within ``timeout_s`` of the request: uvicorn has no such deadline,
  so a client sending a byte every few seconds would hold its connection (and whatever the
  handler holds) for ever. The read that would pass the deadline raises ``RequestTimeout`` (408);
  once the body is complete, ``receive`` is not timed any more (it then only waits for a
  disconnect);
- whatever the layers inside do with either exception (FastAPI turns errors raised while it
  parses a form into a generic 400), the response that goes out is the 413 or 408: the
  middleware remembers that a limit fired and substitutes its own answer for the inner one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api.errors import error_response
from registry.errors import InvalidInput, PayloadTooLarge, RequestTimeout

_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding"})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if isinstance(declared, InvalidInput):
            await send_error_and_close(send, declared)
            return
        if declared is not None and declared > self.max_bytes:
            await send_error_and_close(
                send, PayloadTooLarge("request body", declared, self.max_bytes)
            )
            return

        state: dict[str, Any] = {
            "received": 0,
            "body_done": False,
            "error": None,
            "started": False,
            "done": False,
        }
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s if self.timeout_s is not None else None

        async def limited_receive() -> Message:
            if deadline is None or state["body_done"]:
                message = await receive()
            else:
                try:
                    # timeout_at cancels this task at the deadline; unlike wait_for it does not
                    # start a new task for every chunk of the body.
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    assert self.timeout_s is not None
                    state["error"] = RequestTimeout(
                        "the request body", state["received"], self.timeout_s
                    )
                    raise state["error"] from None
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                state["body_done"] = not message.get("more_body", False)
                if state["received"] > self.max_bytes:
                    state["error"] = PayloadTooLarge(
                        "request body", state["received"], self.max_bytes
                    )
                    raise state["error"]
            return message

        async def guarded_send(message: Message) -> None:
            if state["done"]:
                return
            if state["error"] is not None and not state["started"]:
                # The inner app answered after the limit fired (perhaps with its own 400):
                # the client gets the 413 or 408 that explains what happened instead.
                state["done"] = True
                await send_error_and_close(send, state["error"])
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except (PayloadTooLarge, RequestTimeout):
            if state["error"] is None or state["started"]:
                raise
            if not state["done"]:
                await send_error_and_close(send, state["error"])


def _content_length(scope: Scope) -> int | InvalidInput | None:
    framing = [(n, v) for n, v in scope.get("headers", ()) if n in _FRAMING_HEADERS]
    if {n for n, _ in framing} == _FRAMING_HEADERS:
        # RFC 9112 6.3: Transfer-Encoding wins, and the server must close the connection after
        # answering; uvicorn (h11) keeps it open and reads what follows the chunked body as a
        # next request. A proxy in front that went by Content-Length would have forwarded that
        # "next request" as body: refuse the request, and the error response closes the
        # connection.
        return InvalidInput(
            "the request has both Content-Length and Transfer-Encoding, so where it ends is "
            "ambiguous (a request smuggling pattern); send only one of them"
        )
    for name, value in framing:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            if not text.isdigit():
                return InvalidInput(
                    f"Content-Length {text[:40]!r} is not a byte count", content_length=text[:40]
                )
            return int(text)
    return None


async def send_error_and_close(send: Send, exc: Exception) -> None:
    """Answer ``exc`` before the request body is read, and close the connection after it."""
    response = error_response(exc)
    # The rest of the body is not read: tell the client not to reuse this connection.
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": [*response.raw_headers, (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": response.body})
