"""Pulling a registered checkpoint from sources nobody has to trust.

The digest is anchored on chain, so the bytes may come from anywhere: another registry service, a
web folder, a model hub, a USB stick. Each source is read with a size cap
(``max_upload_bytes``), within ``pull_timeout_s`` from connection to last byte, hashed while it
is read and compared with the digest asked for; only then do the bytes go through the one import
path (``services.import_checkpoint``: format check, verdict under the clinic's policy, store).
A source that fails (wrong bytes, truncated, too large, a redirect loop, a stall, an HTTP error)
is recorded with a sentence naming it and the next one is tried; when none gives the bytes,
``PullFailed`` lists every attempt and nothing is stored. A revoked or unknown digest is refused
before any source is asked.

What a source string means:

* ``https://host`` or ``https://host/`` (no path): another registry service;
  ``GET /models/sha256:<hex>/checkpoint``. ``registry+https://host/prefix`` names one served
  under a path prefix.
* an http(s) URL whose path ends with ``/``: a folder; the file is ``<url><hex>.safetensors``.
* any other http(s) URL: the checkpoint file itself.
* a local path: the file itself, or a folder holding ``<hex>.safetensors``.
* ``s3://bucket/key``: the object itself; ``s3://bucket/prefix/`` (ending with ``/``) a folder
  holding ``<hex>.safetensors``. Read through boto3 as ``registry.core.store_s3`` reaches a
  bucket: ``REGISTRY_S3_ENDPOINT_URL`` (checked the same way), credentials the boto3 way
  (``AWS_*`` variables or the AWS config files), explicit connect and read timeouts within
  ``pull_timeout_s``, the size cap checked before and while reading. Errors name the bucket, the
  key and the endpoint without credentials.

Server-side request forgery: the HTTP API lets callers name sources, so there a ``HostGuard``
refuses every address that is not global (loopback, private, link-local, shared, reserved), by
what the host name resolves to and again at every redirect, unless the source's scheme, host and
port are those of a mirror the operator configured (``REGISTRY_MIRRORS``); local paths and
other schemes are refused there too. An ``s3://`` source is read with the service's own
credentials, which may reach buckets the caller could never read: a caller naming any bucket would
turn the service into a reader of them (and tell by the answer whether a key exists), so a caller
may name only an ``s3://`` source inside a configured ``s3://`` mirror (same bucket, under its
prefix). The check resolves the name before the connection does,
so a DNS server that answers differently the second time could still steer one request; the
bytes would still have to hash to an anchored digest to be kept.

Pull-through (``pull_through``): a predict for a verified model that is not stored here pulls it
from the configured mirrors, once per digest however many requests wait for it (a per-digest
lock; the others find it stored).
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import urllib3.exceptions

from registry.core.digest import Digest
from registry.core.store import CheckpointStore
from registry.errors import InvalidInput, PullFailed
from registry.pull_s3 import S3ReadFailed, read_s3
from registry.services import ImportResult, VerdictOf, import_checkpoint, importable

MAX_REDIRECTS = 5
MAX_SOURCES = 8
CHUNK_BYTES = 64 * 1024
HTTP_SCHEMES = ("http", "https")
REGISTRY_PREFIX = "registry+"


@dataclass(frozen=True, slots=True)
class PullResult:
    """Where the bytes came from (None: already stored, no source asked), what the import did,
    and the sources that failed before it."""

    import_result: ImportResult
    source: str | None
    attempts: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {**self.import_result.to_dict(), "source": self.source, "attempts": self.attempts}


class _SourceFailed(Exception):
    """One source did not give the bytes; ``problem`` is a code, ``message`` a sentence."""

    def __init__(self, problem: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.problem, self.message, self.details = problem, message, details


def shown(source: str) -> str:
    """``source`` as errors and logs show it: no user, password, query or fragment (signed URLs
    carry their credentials there)."""
    parts = urlsplit(source)
    if parts.scheme.removeprefix(REGISTRY_PREFIX) not in (*HTTP_SCHEMES, "s3"):
        return source
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# --- which addresses a source may reach ------------------------------------------------------


class HostGuard:
    """Refuses http(s) URLs whose host resolves to an address that is not global, unless the
    URL's scheme, host and port are a configured mirror's. Local paths and other schemes are
    refused outright: a caller of the HTTP API must not make the server read its own files."""

    def __init__(self, mirrors: Iterable[str] = ()) -> None:
        mirrors = list(mirrors)
        self.allowed = {_origin(m) for m in mirrors if _is_http(m)}
        self.buckets = [_s3_parts(m) for m in mirrors if _is_s3(m)]

    def check_source(self, source: str) -> None:
        if _is_s3(source):
            if not self._inside_s3_mirror(source):
                raise InvalidInput(
                    f"the source {shown(source)!r} is an s3:// location outside the configured "
                    "mirrors; this service reads buckets with its own credentials, so callers may "
                    "name only s3:// sources inside an s3:// mirror of REGISTRY_MIRRORS",
                    source=shown(source),
                )
            return
        if not _is_http(source):
            raise InvalidInput(
                f"the source {shown(source)!r} is not an http(s) URL; this service fetches only "
                "http(s) sources for callers (paths and other schemes are for `registry pull`)",
                source=shown(source),
            )

    def _inside_s3_mirror(self, source: str) -> bool:
        bucket, key = _s3_parts(source)
        if any(part in (".", "..") for part in key.split("/")):
            return False  # some S3-compatible servers resolve dot segments: never let one climb
        for mirror_bucket, prefix in self.buckets:
            if bucket != mirror_bucket:
                continue
            folder = prefix.rstrip("/")
            if not folder or key == folder or key.startswith(folder + "/"):
                return True
        return False

    def check_url(self, url: str) -> None:
        """Raise ``_SourceFailed('address_refused')`` for a URL this service must not reach."""
        if _origin(url) in self.allowed:
            return
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:
            raise _SourceFailed(
                "unreachable", f"its host {host!r} cannot be resolved ({exc})"
            ) from None
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            if not address.is_global:
                raise _SourceFailed(
                    "address_refused",
                    f"its host {host!r} resolves to {address}, a loopback, private or reserved "
                    "address this service does not fetch from for callers; an operator lists "
                    "such a mirror in REGISTRY_MIRRORS",
                    address=str(address),
                )


def _is_http(source: str) -> bool:
    return urlsplit(source).scheme.lower().removeprefix(REGISTRY_PREFIX) in HTTP_SCHEMES


def _is_s3(source: str) -> bool:
    return urlsplit(source).scheme.lower() == "s3"


def _s3_parts(source: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key), the key without its leading slash."""
    parts = urlsplit(source)
    return parts.netloc, parts.path.removeprefix("/")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower().removeprefix(REGISTRY_PREFIX)
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        port = None
    return scheme, parts.hostname or "", port


# --- where a source keeps a digest's bytes ----------------------------------------------------


def location(source: str, digest: Digest) -> str:
    """The URL or path at which ``source`` should hold ``digest``'s checkpoint (module doc)."""
    parts = urlsplit(source)
    scheme = parts.scheme.lower()
    if scheme.startswith(REGISTRY_PREFIX) or (scheme in HTTP_SCHEMES and parts.path in ("", "/")):
        base = scheme.removeprefix(REGISTRY_PREFIX) + ":" + source.split(":", 1)[1]
        return base.rstrip("/") + f"/models/{digest}/checkpoint"
    if scheme in HTTP_SCHEMES:
        return source + f"{digest.hex}.safetensors" if parts.path.endswith("/") else source
    if scheme == "s3":
        return source + f"{digest.hex}.safetensors" if source.endswith("/") else source
    if len(scheme) > 1 and "://" in source:
        raise _SourceFailed(
            "unsupported",
            f"the scheme {scheme!r} is not one this registry reads (http, https, s3)",
        )
    path = Path(source).expanduser()
    return str(path / f"{digest.hex}.safetensors") if path.is_dir() else str(path)


# --- reading one source -----------------------------------------------------------------------


def fetch(
    digest: Digest,
    source: str,
    *,
    max_bytes: int,
    timeout_s: float,
    guard: HostGuard | None = None,
    session: requests.Session | None = None,
    s3_endpoint_url: str | None = None,
) -> bytes:
    """The bytes ``source`` holds for ``digest``, checked against it; ``_SourceFailed`` else.
    ``s3_endpoint_url``: the S3 API that ``s3://`` sources are read from (None: AWS)."""
    if guard is not None:
        guard.check_source(source)
    where = location(source, digest)
    deadline = time.monotonic() + timeout_s
    if _is_http(where):
        data = _fetch_http(where, max_bytes, timeout_s, deadline, guard, session)
    elif _is_s3(where):
        try:
            data = read_s3(where, max_bytes, timeout_s, s3_endpoint_url)
        except S3ReadFailed as failure:
            raise _SourceFailed(failure.problem, failure.message, **failure.details) from None
    else:
        data = _read_path(Path(where), max_bytes)
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest.hex:
        raise _SourceFailed(
            "wrong_digest",
            f"it gave {len(data)} bytes that hash to sha256:{actual}, not to {digest}",
            expected=str(digest),
            actual=f"sha256:{actual}",
        )
    return data


def _fetch_http(
    url: str,
    max_bytes: int,
    timeout_s: float,
    deadline: float,
    guard: HostGuard | None,
    session: requests.Session | None,
) -> bytes:
    own = session is None
    http = session or requests.Session()
    if own:
        # Server side (a guard), no proxy or .netrc credentials from the environment.
        http.trust_env = guard is None
    seen: set[str] = set()
    try:
        for _ in range(MAX_REDIRECTS + 1):
            if url in seen:
                raise _SourceFailed(
                    "redirect_loop", f"it redirects in a loop (back to {shown(url)})"
                )
            seen.add(url)
            if not _is_http(url):
                raise _SourceFailed(
                    "redirect_refused", f"it redirects to {shown(url)}, not http(s)"
                )
            if guard is not None:
                guard.check_url(url)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _stalled(timeout_s)
            try:
                response = http.get(
                    url,
                    stream=True,
                    allow_redirects=False,
                    timeout=(remaining, remaining),
                    headers={"Accept-Encoding": "identity"},
                )
            except requests.Timeout:
                raise _stalled(timeout_s) from None
            except requests.RequestException as exc:
                raise _SourceFailed("unreachable", f"it could not be reached ({exc})") from None
            with response:
                if response.is_redirect:
                    url = urljoin(url, response.headers.get("Location", ""))
                    continue
                if response.status_code != 200:
                    problem = "not_found" if response.status_code == 404 else "http_error"
                    raise _SourceFailed(
                        problem,
                        f"it answered HTTP {response.status_code} for {shown(url)}",
                        status=response.status_code,
                    )
                return _read_body(response, max_bytes, timeout_s, deadline)
        raise _SourceFailed("redirect_loop", f"it redirects more than {MAX_REDIRECTS} times")
    finally:
        if own:
            http.close()


def _read_body(
    response: requests.Response, max_bytes: int, timeout_s: float, deadline: float
) -> bytes:
    declared = response.headers.get("Content-Length")
    length = int(declared) if declared and declared.strip().isdigit() else None
    if length is not None and length > max_bytes:
        raise _too_large(length, max_bytes)
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise _SourceFailed(
            "encoded", f"it sent the file {encoding}-encoded although identity was asked for"
        )
    body = bytearray()
    try:
        while True:
            if time.monotonic() >= deadline:
                raise _stalled(timeout_s)
            # read1: whatever has arrived, so the deadline is looked at between small reads.
            chunk = response.raw.read1(CHUNK_BYTES, decode_content=False)
            if not chunk:
                break
            body += chunk
            if len(body) > max_bytes:
                raise _too_large(len(body), max_bytes)
    except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
        raise _stalled(timeout_s) from None
    except (urllib3.exceptions.ProtocolError, urllib3.exceptions.HTTPError, OSError) as exc:
        if length is not None and len(body) < length:
            raise _truncated(len(body), length) from None
        raise _SourceFailed("unreachable", f"the connection broke ({exc})") from None
    if length is not None and len(body) != length:
        raise _truncated(len(body), length)
    return bytes(body)


def _read_path(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except FileNotFoundError:
        raise _SourceFailed("not_found", f"there is no file {path}") from None
    except OSError as exc:
        raise _SourceFailed("unreadable", f"{path} cannot be read ({exc.strerror})") from None
    if len(data) > max_bytes:
        raise _too_large(len(data), max_bytes)
    return data


def _stalled(timeout_s: float) -> _SourceFailed:
    return _SourceFailed(
        "timeout",
        f"it did not deliver the file within {timeout_s:g} s (REGISTRY_PULL_TIMEOUT_S)",
        timeout_s=timeout_s,
    )


def _too_large(size: int, limit: int) -> _SourceFailed:
    return _SourceFailed(
        "too_large",
        f"its file is larger than the limit of {limit} bytes (at least {size}; "
        "REGISTRY_MAX_UPLOAD_BYTES)",
        size=size,
        limit=limit,
    )


def _truncated(got: int, declared: int) -> _SourceFailed:
    return _SourceFailed(
        "truncated",
        f"it sent {got} of the {declared} bytes it announced, then closed the connection",
        got=got,
        declared=declared,
    )


# --- pulling ----------------------------------------------------------------------------------


def pull(
    digest: object,
    sources: Sequence[str],
    *,
    verdict_of: VerdictOf,
    store: CheckpointStore,
    max_bytes: int,
    timeout_s: float,
    guard: HostGuard | None = None,
    s3_endpoint_url: str | None = None,
) -> PullResult:
    """Fetch ``digest`` from the first of ``sources`` that gives its bytes, and import them.

    Refused before any source is asked: a digest that is not registered (``NotFound``) or not
    valid under the policy (``NotVerified``). Already stored: nothing is fetched. Every source
    that fails is tried no further; ``PullFailed`` when none gives the bytes. Bytes that hash
    right but fail the format check raise ``InvalidCheckpoint`` (they are what was anchored).
    ``s3_endpoint_url`` (``REGISTRY_S3_ENDPOINT_URL``) is where ``s3://`` sources are read.
    """
    wanted = Digest.parse(digest)
    if not sources:
        raise InvalidInput(
            f'no source to pull {wanted} from: name one (--from, or "sources"), or configure '
            "REGISTRY_MIRRORS",
            digest=str(wanted),
        )
    if len(sources) > MAX_SOURCES:
        raise InvalidInput(
            f"{len(sources)} sources, over the limit of {MAX_SOURCES}; name fewer",
            count=len(sources),
            limit=MAX_SOURCES,
        )
    if guard is not None:
        for source in sources:
            guard.check_source(source)
    verdict = importable(wanted, verdict_of)
    if store.has(wanted.hex, "checkpoint"):
        return PullResult(ImportResult(verdict, False, _card_held(store, verdict)), None)
    attempts: list[dict[str, Any]] = []
    for source in sources:
        try:
            data = fetch(
                wanted,
                source,
                max_bytes=max_bytes,
                timeout_s=timeout_s,
                guard=guard,
                s3_endpoint_url=s3_endpoint_url,
            )
        except _SourceFailed as failure:
            attempts.append(
                {
                    "source": shown(source),
                    "problem": failure.problem,
                    "message": failure.message,
                    **failure.details,
                }
            )
            continue
        result = import_checkpoint(data, verdict_of, store, expected=wanted)
        return PullResult(result, shown(source), tuple(attempts))
    raise PullFailed(wanted.hex, attempts)


def _card_held(store: CheckpointStore, verdict: Any) -> bool:
    record = verdict.record
    return record is not None and store.has(record.card_digest.hex, "card")


class DigestLocks:
    """One lock per digest, so that concurrent pulls of one digest become one pull. ``waiting``
    says how many callers wait behind the one at work (a health page or a test reads it)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    def waiting(self, digest: Digest) -> int:
        with self._guard:
            entry = self._locks.get(digest.hex)
        return 0 if entry is None else max(entry[1] - 1, 0)

    def run(self, digest: Digest, work: Callable[[], Any]) -> Any:
        with self._guard:
            lock, users = self._locks.get(digest.hex, (threading.Lock(), 0))
            self._locks[digest.hex] = (lock, users + 1)
        try:
            with lock:
                return work()
        finally:
            with self._guard:
                lock, users = self._locks[digest.hex]
                if users == 1:
                    del self._locks[digest.hex]
                else:
                    self._locks[digest.hex] = (lock, users - 1)


PULL_THROUGH_LOCKS = DigestLocks()


def pull_through(
    digest: Digest,
    mirrors: Sequence[str],
    *,
    verdict_of: VerdictOf,
    store: CheckpointStore,
    max_bytes: int,
    timeout_s: float,
    locks: DigestLocks = PULL_THROUGH_LOCKS,
    s3_endpoint_url: str | None = None,
) -> PullResult | None:
    """Pull ``digest`` from ``mirrors`` unless it is stored; None when it already was (or got
    stored by a concurrent caller while this one waited). Configured mirrors are the operator's
    own choice, so no guard applies (paths and private addresses are allowed)."""

    def work() -> PullResult | None:
        if store.has(digest.hex, "checkpoint"):
            return None
        return pull(
            digest,
            mirrors,
            verdict_of=verdict_of,
            store=store,
            max_bytes=max_bytes,
            timeout_s=timeout_s,
            s3_endpoint_url=s3_endpoint_url,
        )

    if store.has(digest.hex, "checkpoint"):
        return None
    result: PullResult | None = locks.run(digest, work)
    return result
