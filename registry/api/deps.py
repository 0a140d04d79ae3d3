"""What a request handler needs, built once per process at start-up and handed out per request.

``Services`` holds the chain client, the one inference gate, the store, the audit log, the API
keys and the clinic policy. The chain connection is lazy when it has to be: if the node is down
when the service starts, the service still starts and answers 503 until the node is back;
nothing remembers a failure, so the first request after the node returns connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader

from registry.api.auth import API_KEY_HEADER, ApiRole, Caller, KeyRing
from registry.api.modelfacts import CARDS
from registry.api.refusals import note_audited, note_caller
from registry.chain.client import RegistryClient
from registry.config import Settings
from registry.core.audit import AuditLog
from registry.core.audit_key import key_path, load_key
from registry.core.audit_refusals import RefusalCounter
from registry.core.digest import Digest
from registry.core.oms_bundles import BundleShelf as OmsBundleShelf
from registry.core.policy import Policy
from registry.core.records import Verdict
from registry.core.stores import open_store
from registry.errors import RegistryError
from registry.gate import CheckedDigests, Gate
from registry.index import ChainIndex, index_path
from registry.index.batches import BatchShelf, shelf_path
from registry.offline import ProofBundleShelf
from registry.oms import gate_requirement, trusted_keys


class Services:
    def __init__(
        self,
        settings: Settings,
        *,
        connect: Callable[[], RegistryClient],
        client: RegistryClient | None = None,
    ) -> None:
        self.settings = settings
        self.policy = Policy.from_settings(settings)
        self.keys = KeyRing.parse(
            settings.api_keys.get_secret_value() if settings.api_keys else None
        )
        self.store = open_store(settings)  # the folder, or an s3:// bucket (no I/O yet)
        # The key that keys the log's chain: created on first start, refused if others can
        # read it (ConfigurationError, so the service does not start).
        audit_key = load_key(key_path(settings.audit_key_file, settings.data_dir), create=True)
        self.audit = AuditLog(
            settings.data_dir / "audit.log",
            audit_key,
            sync_interval_s=settings.audit_sync_interval_s,
        )
        self.refusals = RefusalCounter(self.audit)
        self.checked_headers = CheckedDigests()
        self._connect = connect
        self._client = client
        self._gate: Gate | None = None
        self._lock = threading.Lock()
        # The catalogue's event index (GET /models): opened here (no chain I/O), caught up by
        # the lifespan's poller and before each list. Never asked for a verdict.
        self.index = ChainIndex(
            index_path(settings.data_dir),
            lambda: self.client(),  # looked up per call, as a route does
            confirmations=settings.confirmations,
            card_name=self._card_name,
        )
        # Which stored batch manifest holds a digest: where the gate looks for a batched one.
        self.batches = BatchShelf(shelf_path(settings.data_dir), self.store)
        # Model-signing bundles kept per checkpoint, and the keys trusted to sign them (a key
        # that cannot be read stops the start); the gate requires one with
        # REGISTRY_REQUIRE_OMS_SIGNATURE.
        self.oms_bundles = OmsBundleShelf.in_data_dir(settings.data_dir)
        self.oms_keys = trusted_keys(settings)
        # The one model-signing condition, for the gate and for /verify's verdict alike, so a
        # file the page calls verified is one /predict will load.
        self.signature_requirement = gate_requirement(settings, self.oms_keys, self.oms_bundles)

    def _card_name(self, card: Digest) -> str | None:
        summary = CARDS.get(self.store, card)
        return summary.name if summary is not None else None

    @property
    def known_client(self) -> RegistryClient | None:
        """The client if one was built (it may not answer); never tries to connect."""
        return self._client

    def client(self) -> RegistryClient:
        """The chain client, connecting first if start-up could not (raises ChainUnavailable)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def gate(self) -> Gate:
        """The process's one inference gate (models loaded once, validity re-read per TTL)."""
        client = self.client()
        if self._gate is None:
            with self._lock:
                if self._gate is None:
                    self._gate = Gate(
                        client,
                        self.policy,
                        validity_ttl_s=self.settings.validity_ttl_s,
                        locate=self.batches.proofs,
                        require=self.signature_requirement,
                        offline=ProofBundleShelf(self.settings, client.artifact.deployed_bytecode)
                        if self.settings.offline_bundles
                        else None,
                    )
        return self._gate

    def fresh_verdict(self, digest: Digest) -> Verdict | None:
        """The gate's reusable "verified" verdict for ``digest``, if it has one; no I/O at all
        (no chain call, no connecting), so a route may ask on the event loop."""
        return self._gate.fresh_verdict(digest) if self._gate is not None else None

    @contextlib.contextmanager
    def audited(self, event: str, caller: Caller, **fields: Any) -> Iterator[dict[str, Any]]:
        """Record one audit entry for the block: the fields it fills in, and how it ended.

        The block sets ``outcome`` (a verdict, ``registered``...) and whatever identifies the
        operation (digest, block, tx). Whatever leaves the block instead is what happened: any
        exception replaces the outcome the block may have set already (its code, or
        ``internal_error`` for a bug, ``cancelled``), is recorded, then re-raised. Identifiers
        only: the log itself refuses content.
        """
        entry = _audit_entry(fields)
        try:
            yield entry
        except BaseException as exc:
            entry["outcome"] = outcome_of(exc)
            self.audit.append(event, who=caller.id, **entry)
            note_audited()
            raise
        self.audit.append(event, who=caller.id, **entry)
        note_audited()

    @contextlib.asynccontextmanager
    async def audited_async(
        self, event: str, caller: Caller, **fields: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """``audited`` for a block on the event loop, which it never blocks: the entry is written
        before the block's result goes anywhere, and fsynced before it too or within the
        log's sync interval (``audit_sync_interval_s``)."""
        entry = _audit_entry(fields)
        try:
            yield entry
        except BaseException as exc:
            entry["outcome"] = outcome_of(exc)
            await self.audit.append_async(event, who=caller.id, **entry)
            note_audited()
            raise
        await self.audit.append_async(event, who=caller.id, **entry)
        note_audited()


def outcome_of(exc: BaseException) -> str:
    """The audit outcome of an exception that ended an operation."""
    if isinstance(exc, RegistryError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"  # the answer never went out (deadline, shutdown)
    if not isinstance(exc, Exception):
        return "interrupted"  # KeyboardInterrupt, SystemExit: the process is stopping
    return "internal_error"  # a bug: the client got a 500, the log says so


def _audit_entry(fields: dict[str, Any]) -> dict[str, Any]:
    # pid: which worker process answered (each has its own gate and validity cache).
    return {"digest": None, "block": None, "outcome": None, "pid": os.getpid(), **fields}


# Dependencies are ``async def`` although they never await: FastAPI runs a plain ``def``
# dependency in the thread pool, and three such hops per request cost more than the work itself.


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

# What Digest.parse accepts (less surrounding whitespace): the document states it, the route
# still parses the value itself and answers 400 `invalid_digest` (json_schema_extra validates
# nothing, so FastAPI's own 422 does not take over).
DIGEST_PATTERN = r"^(?:[Ss][Hh][Aa]256:|0[Xx])?[0-9A-Fa-f]{64}$"
DigestPath = Annotated[
    str,
    Path(
        description="the checkpoint's SHA-256: 64 hex digits, optionally prefixed with "
        "`sha256:` or `0x`",
        json_schema_extra={"pattern": DIGEST_PATTERN},
    ),
]

_api_key = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    scheme_name="ApiKey",
    description="registrar / revoker keys for writes; any configured key for reads when the "
    "service requires keys for reads (REGISTRY_REQUIRE_KEY_FOR_READS)",
)


def _requiring(role: ApiRole | None) -> Callable[..., Awaitable[Caller]]:
    # One dependency (plus the key header, which documents the scheme) rather than a chain of
    # small ones: FastAPI's per-request cost grows with every node of the graph.
    async def dependency(
        request: Request, key: Annotated[str | None, Security(_api_key)]
    ) -> Caller:
        services: Services = request.app.state.services
        caller = services.keys.identify(key, request.client.host if request.client else None)
        note_caller(caller.id)  # a refusal below is counted under the key, not the address
        if role is not None or services.settings.require_key_for_reads:
            services.keys.require(caller, role)
        return caller

    return dependency


Reader = Annotated[Caller, Depends(_requiring(None))]
# A read takes a key but needs one only with REGISTRY_REQUIRE_KEY_FOR_READS: OpenAPI says so with
# an empty alternative next to the key scheme (read routes add it; create_app drops it when reads
# need a key). Without it, the document claims that anonymous reads are refused.
KEY_OPTIONAL: dict[str, Any] = {"security": [{}]}
Registrar = Annotated[Caller, Depends(_requiring(ApiRole.REGISTRAR))]
Revoker = Annotated[Caller, Depends(_requiring(ApiRole.REVOKER))]
