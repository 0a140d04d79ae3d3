"""The product's one exception tree.

The root and the checkpoint- and card-format errors live in ``modelformat.errors`` (both
``registry`` and ``training`` raise them) and are re-exported here; the trainer's errors
(``training.errors``) hang under ``InvalidInput``. Callers read fields (``exc.digest``), never parse
``str(exc)``. Every message says what happened, the offending value, and what to do next. ``code``
is the stable machine-readable name used by the CLI's ``--json`` output and the HTTP API's error
body; each class has its own, except the subclasses marked "= parent's code", which refine their
parent's meaning without changing it (tests/modelformat/test_error_tree.py holds that list).

    RegistryError                    (modelformat.errors)
    ├── InvalidInput                 bad user input; nothing was changed (modelformat.errors)
    │   ├── InvalidDigest
    │   ├── InvalidAddress           = parent's code; no address, or a bad EIP-55 checksum (core.address)
    │   ├── InvalidCheckpoint        refused before any deserialiser saw it (modelformat.errors)
    │   │   ├── PickleRejected       a pickle or zip (torch.save), never opened
    │   │   ├── MalformedCheckpoint  = parent's code; ``problem`` names the broken rule
    │   │   └── SpecError            a header field that describes no network we build
    │   ├── InvalidModelCard         (modelformat.errors)
    │   │   └── CardError            = parent's code; a value with no canonical JSON (training)
    │   ├── TrainingError            the trainer's inputs (training.errors)
    │   │   ├── DataError
    │   │   ├── CardError            (also an InvalidModelCard, above)
    │   │   └── ConfigError
    │   ├── InvalidImage
    │   ├── PayloadTooLarge
    │   ├── RequestTimeout           a request body that does not arrive in time
    │   ├── HostNotAllowed           a Host header this service does not answer to
    │   ├── InvalidRegistrationRequest  a signed registration file that is not one (core.signed_request)
    │   ├── WrongSigningDomain       a signed registration for another chain or contract (chain.delegation)
    │   └── InvalidOmsBundle         not a key-based model-signing bundle, or no usable key (registry.oms)
    ├── DeadlineExceeded             a request not processed within the service's deadline
    ├── ConfigurationError           settings, keys, artifacts, deployments
    ├── ChainError
    │   ├── ChainUnavailable         cannot tell: node down, timeout
    │   ├── WrongChain
    │   ├── ContractMismatch         address holds no code, or not ours
    │   ├── TransactionFailed        mined with status 0, or never mined
    │   │   └── NonceGap             waits behind a nonce the chain no longer has (registry.chain)
    │   ├── ContractRevert           the contract refused the call (registry.chain.reverts)
    │   │   ├── RegistryContractError  = parent's code; one subclass per custom error in the ABI
    │   │   │   └── InvalidNonce
    │   │   │       ├── NonceUsed    a signed registration replayed (chain.delegation)
    │   │   │       └── NonceCancelled  its nonce cancelled by the registrar (chain.delegation)
    │   │   └── UndecodedRevert      = parent's code; revert data no ABI error matches
    │   └── ProofsUnsupported        the node gives no eth_getProof (registry.chain.proofs)
    ├── BundleRejected               a proof bundle that does not prove what it claims
    ├── NotVerified                  the gate refuses a checkpoint (carries the Verdict)
    ├── OmsSignatureRefused          a model-signing bundle that does not vouch for the digest (registry.oms)
    ├── AuthError
    │   ├── Unauthenticated
    │   └── Forbidden
    │       └── CrossSiteRequest     a browser request another site's page started, keyless
    ├── NotFound
    ├── PullFailed                   no source gave a registered checkpoint's bytes (registry.pull)
    ├── StoreError
    │   └── StoreUnavailable         cannot tell: bucket unreachable, access denied (core.store_s3)
    ├── AuditLogCorrupt
    └── AuditLogUnavailable          an entry could not be written or flushed to disk
"""

from __future__ import annotations

from typing import Any

from modelformat.errors import (
    InvalidCheckpoint,
    InvalidInput,
    InvalidModelCard,
    MalformedCheckpoint,
    PickleRejected,
    RegistryError,
    SpecError,
)

__all__ = [
    "InvalidCheckpoint",
    "InvalidInput",
    "InvalidModelCard",
    "MalformedCheckpoint",
    "PickleRejected",
    "RegistryError",
    "SpecError",
]


# --- bad input -------------------------------------------------------------------------------


class InvalidDigest(InvalidInput):
    code = "invalid_digest"

    def __init__(self, value: object, problem: str) -> None:
        shown = repr(value) if len(repr(value)) <= 100 else repr(value)[:97] + "..."
        super().__init__(
            f"not a SHA-256 digest: {shown} ({problem}); give 64 hex characters, "
            "optionally prefixed with '0x' or 'sha256:'",
            value=str(value)[:200],
            problem=problem,
        )
        self.value = value
        self.problem = problem


class InvalidImage(InvalidInput):
    code = "invalid_image"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"

    def __init__(
        self,
        what: str,
        size: int,
        limit: int,
        *,
        unit: str = "bytes",
        advice: str = "send a smaller file or raise the limit in the settings",
    ) -> None:
        super().__init__(
            f"{what} is larger than the limit of {limit} {unit} (got at least {size}); {advice}",
            what=what,
            size=size,
            limit=limit,
            unit=unit,
        )
        self.what, self.size, self.limit, self.unit = what, size, limit, unit


class RequestTimeout(InvalidInput):
    code = "request_timeout"

    def __init__(self, what: str, received: int, timeout_s: float) -> None:
        super().__init__(
            f"{what} did not arrive within {timeout_s:g} s (got {received} bytes by then); "
            "send it without pausing, or raise REGISTRY_BODY_TIMEOUT_S",
            what=what,
            received=received,
            timeout_s=timeout_s,
        )
        self.received, self.timeout_s = received, timeout_s


class HostNotAllowed(InvalidInput):
    """A request whose ``Host`` header names none of the hosts this service answers to.

    A page on a name an attacker controls, re-pointed at this service's address (DNS rebinding),
    sends its requests with that name as the ``Host``: refusing it keeps such a page from reading
    anything here. ``host`` is the header's value, cut to 200 characters.
    """

    code = "host_not_allowed"

    def __init__(self, host: str) -> None:
        host = host[:200]
        super().__init__(
            f"this service does not answer to the host name {host!r}: if that is the name "
            "clinic users reach it by, add it to REGISTRY_ALLOWED_HOSTS",
            host=host,
        )
        self.host = host


# --- the service's own bounds ----------------------------------------------------------------


class DeadlineExceeded(RegistryError):
    """A request the service stopped working on after ``deadline_s`` seconds: not the caller's
    fault (the same request may pass when the service is less busy), so no ``InvalidInput``.
    ``stage`` names what was about to start (decoding image 3 of 10, inference)."""

    code = "deadline_exceeded"

    def __init__(self, stage: str, elapsed_s: float, deadline_s: float) -> None:
        super().__init__(
            f"the request was stopped before {stage}: {elapsed_s:.3g} s had passed, over the "
            f"service's limit of {deadline_s:g} s per request (REGISTRY_REQUEST_DEADLINE_S); "
            "retry after the time in Retry-After, or send fewer or smaller images",
            stage=stage,
            elapsed_s=round(elapsed_s, 3),
            deadline_s=deadline_s,
        )
        self.stage, self.elapsed_s, self.deadline_s = stage, elapsed_s, deadline_s


# --- configuration ---------------------------------------------------------------------------


class ConfigurationError(RegistryError):
    code = "configuration_error"


# --- chain -----------------------------------------------------------------------------------


class ChainError(RegistryError):
    code = "chain_error"


class ChainUnavailable(ChainError):
    """The chain could not be asked: nothing can be verified until it answers again."""

    code = "chain_unavailable"

    def __init__(self, endpoint: str, cause: str) -> None:
        super().__init__(
            f"the chain at {endpoint} did not answer ({cause}); nothing is verified until it does. "
            "Check that the node is running (`registry chain start` for the local one)",
            endpoint=endpoint,
            cause=cause,
        )
        self.endpoint, self.cause = endpoint, cause


class WrongChain(ChainError):
    code = "wrong_chain"

    def __init__(self, expected: int, actual: int, endpoint: str) -> None:
        super().__init__(
            f"the node at {endpoint} serves chain id {actual}, but the deployment is on chain id "
            f"{expected}; point REGISTRY_RPC_URL at the right node or use that chain's deployment",
            expected=expected,
            actual=actual,
            endpoint=endpoint,
        )
        self.expected, self.actual = expected, actual


class ContractMismatch(ChainError):
    code = "contract_mismatch"

    def __init__(self, address: str, problem: str) -> None:
        super().__init__(
            f"the address {address} {problem}; check REGISTRY_CONTRACT_ADDRESS, "
            "or deploy with `registry deploy`",
            address=address,
            problem=problem,
        )
        self.address = address


class TransactionFailed(ChainError):
    code = "transaction_failed"

    def __init__(self, tx_hash: str, problem: str) -> None:
        super().__init__(f"transaction {tx_hash} {problem}", tx_hash=tx_hash, problem=problem)
        self.tx_hash = tx_hash


class ContractRevert(ChainError):
    """The contract refused the call; subclasses mirror its custom errors one to one."""

    code = "contract_revert"


class ProofsUnsupported(ChainError):
    """The node answers, but gives no Merkle proofs (``eth_getProof``): no bundle can be made."""

    code = "proofs_unsupported"

    def __init__(self, endpoint: str, cause: str) -> None:
        super().__init__(
            f"the chain at {endpoint} gives no state proofs (eth_getProof: {cause}); make proof "
            "bundles from a node that does (anvil, geth, reth, erigon, besu, nethermind)",
            endpoint=endpoint,
            cause=cause,
        )
        self.endpoint, self.cause = endpoint, cause


class BundleRejected(RegistryError):
    """A proof bundle that does not lead from the trusted block hash to the record it claims.

    Not bad input in the usage sense: the file is well formed, it just proves nothing (tampered,
    another chain, block, contract or record); nothing in it is believed.
    """

    code = "bundle_rejected"

    def __init__(self, problem: str, **details: Any) -> None:
        super().__init__(
            f"the proof bundle is refused: {problem}; nothing in it is believed",
            problem=problem,
            **details,
        )
        self.problem = problem


# --- the gate, access, storage ---------------------------------------------------------------


class NotVerified(RegistryError):
    """The gate refuses a checkpoint. ``verdict`` says why (unknown, revoked, policy...)."""

    code = "not_verified"

    def __init__(self, message: str, verdict: Any) -> None:
        super().__init__(message, reason=getattr(verdict, "reason", None))
        self.verdict = verdict


class AuthError(RegistryError):
    code = "auth_error"


class Unauthenticated(AuthError):
    code = "unauthenticated"


class Forbidden(AuthError):
    code = "forbidden"


class CrossSiteRequest(Forbidden):
    """A state-changing request that another site's page made a clinic browser send.

    ``origin`` and ``fetch_site`` are the request's ``Origin`` and ``Sec-Fetch-Site`` headers
    (None where absent), cut to 200 characters.
    """

    code = "cross_site_request"

    def __init__(self, method: str, origin: str | None, fetch_site: str | None) -> None:
        origin = origin[:200] if origin is not None else None
        fetch_site = fetch_site[:200] if fetch_site is not None else None
        started_by = f"a page at {origin!r}" if origin is not None else "another site's page"
        super().__init__(
            f"refused a {method} that {started_by} sent from this browser (Sec-Fetch-Site: "
            f"{fetch_site or 'absent'}): another site may not verify, register or predict in a "
            "clinic user's name. Use this service's own page, or call the API from a script "
            "with an X-API-Key header",
            method=method,
            origin=origin,
            fetch_site=fetch_site,
        )
        self.method, self.origin, self.fetch_site = method, origin, fetch_site


class NotFound(RegistryError):
    code = "not_found"


class PullFailed(RegistryError):
    """No source gave the bytes of ``digest``: ``attempts`` holds, per source tried in order, the
    source (without credentials), a ``problem`` code and a sentence. Nothing was stored."""

    code = "pull_failed"

    def __init__(self, digest: str, attempts: list[dict[str, Any]]) -> None:
        tried = "; ".join(f"{a['source']}: {a['message']}" for a in attempts)
        super().__init__(
            f"could not pull sha256:{digest[:12]}… from any of {len(attempts)} source(s) ({tried}); "
            "nothing was stored: name another source, or fix the one that failed",
            digest=digest,
            attempts=attempts,
        )
        self.digest, self.attempts = digest, attempts


class StoreError(RegistryError):
    code = "store_error"


class StoreUnavailable(StoreError):
    """The store could not be asked (unreachable, timed out, access denied, no such bucket).

    Like ``ChainUnavailable``, "can't tell", not "no": nothing is read from or written to the store
    until it answers. ``endpoint`` is shown as ``redact_endpoint`` shows it, never with
    credentials; ``digest`` and ``kind`` name the object asked for, where there was one.
    """

    code = "store_unavailable"

    def __init__(
        self,
        store: str,
        endpoint: str,
        problem: str,
        *,
        advice: str,
        digest: str | None = None,
        kind: str | None = None,
    ) -> None:
        what = f"{kind} sha256:{digest[:12]}… in " if digest and kind else ""
        super().__init__(
            f"could not reach {what}the store {store} at {endpoint} ({problem}); nothing is read "
            f"from or written to it until it answers. {advice}",
            store=store,
            endpoint=endpoint,
            problem=problem,
            digest=digest,
            kind=kind,
        )
        self.store, self.endpoint, self.problem = store, endpoint, problem
        self.digest, self.kind = digest, kind


class AuditLogCorrupt(RegistryError):
    code = "audit_log_corrupt"

    def __init__(self, path: str, line: int, problem: str) -> None:
        super().__init__(
            f"audit log {path} fails verification at line {line}: {problem}; "
            "keep the file as evidence and restore from a trusted copy",
            path=path,
            line=line,
            problem=problem,
        )
        self.path, self.line, self.problem = path, line, problem


class AuditLogUnavailable(RegistryError):
    code = "audit_log_unavailable"

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(
            f"audit log {path} cannot record: {problem}; nothing that must be recorded is done "
            "until it can. Check the disk, run `registry audit verify` on the file, then restart "
            "the service",
            path=path,
            problem=problem,
        )
        self.path, self.problem = path, problem
