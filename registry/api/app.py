"""``create_app(settings)``: the clinic HTTP service, with nothing built at import time.

Everything stateful (chain client, gate, store, audit log, API keys) is built in the lifespan, once
per process, from the settings given. ``client`` injects a chain client (tests share a
``memory_client()`` with the app this way). ``REGISTRY_RPC_URL=memory`` makes the app start its own
in-process chain with a fresh registry whose signer holds every role: handy for a quick demo, and
gone when the process ends. If the node is down at start-up the service starts anyway and answers
503 until it is back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp

from registry.api import errors
from registry.api.anchoring import AuditAnchoring
from registry.api.browser import BrowserHardeningMiddleware
from registry.api.deps import Services
from registry.api.hosts import AllowedHosts
from registry.api.limits import BodyLimitMiddleware
from registry.api.refusals import RefusalAuditMiddleware
from registry.api.routes import (
    audit,
    batches,
    health,
    imports,
    models,
    oms,
    predict,
    proofs,
    relay,
    verify,
    web,
)
from registry.chain.client import RegistryClient
from registry.config import Settings
from registry.errors import AuditLogUnavailable, ChainUnavailable
from registry.index import Poller

log = logging.getLogger("registry.api")

DESCRIPTION = """\
Verify medical-imaging model checkpoints against an append-only on-chain registry, and run
inference only with checkpoints that are registered, unrevoked and within the clinic's policy.

* A model's identity is the SHA-256 of its exact checkpoint file bytes.
* "Not verified" is an answer (200, `verified: false`, with the reason); a chain that cannot be
  asked is an error (503), and then nothing is verified and no inference runs.
* Every error has the body `{"error": {"code", "message", "details"}}`.
* Writes need an API key in the `X-API-Key` header (registrar: `POST /models`; revoker:
  `POST /models/{digest}/revoke`); reads need one only when the service is configured so.
* Request bodies are limited to `REGISTRY_MAX_UPLOAD_BYTES` (413 beyond it, also for chunked
  uploads) and must arrive within `REGISTRY_BODY_TIMEOUT_S` of the request (408 otherwise).
* A POST, PUT, PATCH or DELETE that another site's page sent from a browser (`Sec-Fetch-Site:
  cross-site`, or a foreign `Origin`) without an `X-API-Key` is refused (403
  `cross_site_request`); scripts, which send neither header, and this service's own page pass.
"""


def _build_services(settings: Settings, client: RegistryClient | None) -> Services:
    from registry.chain.connection import MEMORY, connect, memory_client

    def connect_now() -> RegistryClient:
        # The contract's identity is checked on every call anyway (client-side TTL); here only
        # the endpoint and the deployment are resolved, so a wrong chain still starts and 503s.
        return connect(settings, need_contract=False)

    if client is None:
        if settings.rpc_url == MEMORY:
            client = memory_client(settings)
            log.warning("serving an in-process 'memory' chain: its records end with the process")
        else:
            try:
                client = connect_now()
            except ChainUnavailable as exc:
                log.warning("chain not reachable at start-up (%s); answering 503 until it is", exc)
    return Services(settings, connect=connect_now, client=client)


class _ClinicApp(FastAPI):
    """FastAPI with the browser hardening outside every layer, the 500 handler included:
    ``add_middleware`` would put it inside that handler, and a 500 would go out without it."""

    allowed_hosts: AllowedHosts

    def build_middleware_stack(self) -> ASGIApp:
        hardened = BrowserHardeningMiddleware(super().build_middleware_stack(), self.allowed_hosts)
        # Outside even the hardening: its refusals (wrong host, cross-site) are counted too.
        return RefusalAuditMiddleware(hardened, self)


def create_app(settings: Settings, *, client: RegistryClient | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = await run_in_threadpool(_build_services, settings, client)
        # One poller per worker; SQLite lets one of them write at a time, the others skip.
        poller = Poller(app.state.services.index, settings.index_poll_interval_s).start()
        # Every worker tries; the one holding the anchoring lock anchors for all of them.
        app.state.anchoring = AuditAnchoring(app.state.services).start()
        try:
            async with app.state.services.refusals.flushing():  # the last window at shutdown
                yield
        finally:
            await run_in_threadpool(poller.stop)
            # After the last refusal window is written, so that the final anchor covers it.
            await run_in_threadpool(app.state.anchoring.stop)
        try:  # entries still inside their sync interval
            await run_in_threadpool(app.state.services.audit.flush)
        except AuditLogUnavailable as exc:
            log.error("%s", exc)

    app = _ClinicApp(
        title="Medical model registry: clinic service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Swagger UI and ReDoc load their scripts from a CDN, unpinned: /openapi.json stays.
        docs_url=None,
        redoc_url=None,
    )
    app.allowed_hosts = AllowedHosts.from_settings(settings)
    log.info("answering to the host names %s", app.allowed_hosts.describe())
    errors.install(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_upload_bytes,
        timeout_s=settings.body_timeout_s,
    )
    for module in (
        health,
        verify,
        relay,
        models,
        proofs,
        imports,
        batches,
        oms,
        predict,
        audit,
        web,
    ):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")
    if settings.require_key_for_reads:
        _document_keys_required_for_reads(app)
    return app


def _document_keys_required_for_reads(app: FastAPI) -> None:
    """Drop the anonymous alternative (``deps.KEY_OPTIONAL``) the read routes document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if "security" in operation:
                    operation["security"] = [s for s in operation["security"] if s]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
