"""The checkpoint store in an S3-compatible bucket (AWS, MinIO, Ceph...), shared by several services.

A folder store serves one machine; a clinic group or a hospital with several sites wants one
place every service reads from. The contract is the folder store's (``registry.core.store``):
objects live at ``prefix/<kind>/<ab>/<cdef...>``, named by the SHA-256 of their bytes, are never
overwritten, and every read re-hashes what came back, so the bucket is not trusted either: a swapped
object is a ``StoreError`` naming its key, never bytes handed to the gate.

Never overwriting a key takes a conditional put (``If-None-Match: *``, which AWS, MinIO and
moto honour): two services putting the same bytes both succeed, the second one's put is refused
(412) and the object already there is re-hashed instead. A server that refuses the condition
(501) gets a put without it after a HEAD found nothing, then the object is read back and checked.

Network failures are "can't tell", like an unreachable chain: ``StoreUnavailable`` (HTTP 503),
naming the bucket and the endpoint as ``redact_endpoint`` shows it, never a credential. Timeouts
and retries are set here, not left to botocore's defaults (60 s reads, retries without end in
some modes). boto3 is the ``[s3]`` extra, imported only when an S3 store is built.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

from registry.core.endpoint import redact_endpoint
from registry.core.store import Kind, check_digest, check_kind, sha256_hex
from registry.errors import (
    ConfigurationError,
    NotFound,
    PayloadTooLarge,
    StoreError,
    StoreUnavailable,
)

CONNECT_TIMEOUT_S = 5.0  # a TCP + TLS handshake; a bucket that takes longer is down for us
READ_TIMEOUT_S = 30.0  # between two reads of a response; a 16 MiB object streams well within it
MAX_ATTEMPTS = 3  # the first try and two retries (botocore's "standard" mode, with backoff)
KNOWN_KEYS = 4096  # keys seen present, kept per process: objects are immutable once written
# A key seen absent may appear (another service puts it), so "absent" is believed only this long:
# a catalogue page asks has() of up to 500 records, and one HEAD each would make it seconds long.
ABSENT_TTL_S = 5.0

AWS_ENDPOINT = "AWS S3 (the region's default endpoint)"
# S3's bucket naming rules: 3-63 lowercase letters, digits, dots and hyphens.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9._\-]+")

# Error codes that mean the store cannot be asked, not that the object is missing or bad.
_DENIED = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AuthorizationHeaderMalformed",
    "403",
}
_UNAVAILABLE = {"NoSuchBucket", "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}


def parse_store_url(url: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` -> (bucket, prefix without surrounding slashes)."""
    parts = urlsplit(url.strip())
    bucket, prefix = parts.netloc, parts.path.strip("/")
    problem = None
    if parts.scheme != "s3":
        problem = "it is not an s3:// URL"
    elif parts.query or parts.fragment or "@" in bucket:
        problem = "it has a query, a fragment or credentials (credentials go in AWS_* variables)"
    elif _BUCKET.fullmatch(bucket) is None or ".." in bucket:
        problem = f"{bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.', '-')"
    elif prefix and not all(
        _PREFIX_PART.fullmatch(p) and p not in (".", "..") for p in prefix.split("/")
    ):
        problem = f"the prefix {prefix!r} has an empty, '.' or '..' segment or unusual characters"
    if problem is not None:
        shown = url if "@" not in url else "(a URL with credentials, not shown)"
        raise ConfigurationError(
            f"REGISTRY_STORE_URL={shown} is not a store this service can use: {problem}; "
            "give s3://bucket/prefix (e.g. s3://clinic-models/registry), or unset it for the "
            "folder <data_dir>/store",
            problem=problem,
        )
    return bucket, prefix


def check_endpoint(url: str) -> None:
    """Refuse an endpoint URL with more than scheme://host[:port][/path]: botocore repeats the
    whole URL in its errors, so a credential in it would reach logs and messages."""
    parts = urlsplit(url.strip())
    try:
        parts.port  # noqa: B018 (a port out of range raises here)
        bad = parts.scheme not in ("http", "https") or not parts.hostname
    except ValueError:
        bad = True
    if bad or parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigurationError(
            f"REGISTRY_S3_ENDPOINT_URL ({redact_endpoint(url)}) is not an http(s)://host[:port] "
            "URL without credentials, query or fragment; credentials go in AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY (e.g. http://127.0.0.1:9000 for a local MinIO)",
            problem="invalid endpoint",
        )


class S3Store:
    """A ``CheckpointStore`` in an S3 bucket, under ``prefix``; thread-safe (one boto3 client)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        max_object_bytes: int,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ConfigurationError(
                "an s3:// store needs boto3, which is not installed; install the extra: "
                "pip install 'medical-model-registry[s3]'",
                missing="boto3",
            ) from None
        if endpoint_url is not None:
            check_endpoint(endpoint_url)
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.max_object_bytes = max_object_bytes
        self.endpoint = redact_endpoint(endpoint_url) if endpoint_url else AWS_ENDPOINT
        self.where = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        config = Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # Path-style addressing: MinIO and most self-hosted servers have no per-bucket DNS.
            s3={"addressing_style": "path"} if endpoint_url else {},
        )
        # A session of its own: boto3's default one is shared module state and not thread-safe.
        session = boto3.session.Session()
        try:
            self._client = session.client("s3", endpoint_url=endpoint_url, config=config)
        except ValueError:  # botocore's "Invalid endpoint", which would repeat the whole URL
            raise ConfigurationError(
                f"REGISTRY_S3_ENDPOINT_URL ({self.endpoint}) is not a URL botocore can use; "
                "give http(s)://host[:port], e.g. http://127.0.0.1:9000 for a local MinIO",
                problem="invalid endpoint",
            ) from None
        self._known: OrderedDict[str, None] = OrderedDict()
        self._absent: OrderedDict[str, float] = OrderedDict()  # key -> believed until (monotonic)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Store({self.where!r}, endpoint={self.endpoint!r})"

    def key(self, digest_hex: str, kind: str) -> str:
        """The object key of ``digest_hex``: ``prefix/<kind>/<ab>/<cdef...>``."""
        check_kind(kind)
        check_digest(digest_hex)
        name = f"{kind}/{digest_hex[:2]}/{digest_hex[2:]}"
        return f"{self.prefix}/{name}" if self.prefix else name

    # --- the CheckpointStore contract ---------------------------------------------------------

    def put(self, data: bytes, kind: Kind) -> str:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"put() stores bytes, not {type(data).__name__}")
        data = bytes(data)
        digest = sha256_hex(data)
        key = self.key(digest, kind)
        if len(data) > self.max_object_bytes:
            # get() would refuse to read it back: never write what cannot be served.
            raise PayloadTooLarge(f"{kind} sha256:{digest[:12]}…", len(data), self.max_object_bytes)
        if self._is_known(key) or self._exists(key, digest, kind):
            self._check_existing(key, digest, kind)
            return digest
        try:
            try:
                self._call("put_object", digest, kind, Key=key, Body=data, IfNoneMatch="*")
            except _Refused as refused:
                if refused.status != 501:
                    raise
                # The server does not do conditional puts: HEAD found nothing just now, and
                # whoever wrote meanwhile wrote these bytes or is caught by the read-back.
                self._call("put_object", digest, kind, Key=key, Body=data)
                self._check_existing(key, digest, kind)
        except _Refused as refused:
            if refused.status != 412:
                raise self._store_error(refused, f"could not write {key}", digest, kind) from None
            # Another service wrote this key since the HEAD: its bytes are checked like ours.
            self._check_existing(key, digest, kind)
        self._remember(key)
        return digest

    def get(self, digest_hex: str, kind: Kind) -> bytes:
        key = self.key(digest_hex, kind)
        data = self._read(key, digest_hex, kind)
        actual = sha256_hex(data)
        if actual != digest_hex:
            raise self._corrupted(key, digest_hex, actual, kind)
        self._remember(key)
        return data

    def has(self, digest_hex: str, kind: Kind) -> bool:
        key = self.key(digest_hex, kind)
        return self._is_known(key) or self._exists(key, digest_hex, kind)

    def has_maybe_stale(self, digest_hex: str, kind: Kind) -> bool:
        """``has``, except that "no" may be up to ``ABSENT_TTL_S`` old: for listings only."""
        key = self.key(digest_hex, kind)
        if self._is_known(key):
            return True
        if self._recently_absent(key):
            return False
        if self._exists(key, digest_hex, kind):
            return True
        self._note_absent(key)
        return False

    # --- helpers --------------------------------------------------------------------------------

    def _exists(self, key: str, digest: str, kind: str) -> bool:
        try:
            self._call("head_object", digest, kind, Key=key)
        except _Refused as refused:
            if refused.status == 404:
                return False
            raise self._store_error(refused, f"could not look up {key}", digest, kind) from None
        self._remember(key)
        return True

    def _read(self, key: str, digest: str, kind: str) -> bytes:
        try:
            response = self._call("get_object", digest, kind, Key=key)
        except _Refused as refused:
            if refused.status == 404:
                raise NotFound(
                    f"no {kind} with sha256:{digest} in the store {self.where} "
                    f"(key {key}); upload it first, or check the digest",
                    digest=digest,
                    kind=kind,
                ) from None
            raise self._store_error(refused, f"could not read {key}", digest, kind) from None
        body = response["Body"]
        try:
            size = response.get("ContentLength")
            if isinstance(size, int) and size > self.max_object_bytes:
                raise self._too_large(key, size, digest, kind)
            # One byte over the cap is enough to refuse: the length header is the server's word.
            data = self._guard(digest, kind, body.read, self.max_object_bytes + 1)
        finally:
            body.close()
        if len(data) > self.max_object_bytes:
            raise self._too_large(key, len(data), digest, kind)
        return bytes(data)

    def _check_existing(self, key: str, digest: str, kind: str) -> None:
        actual = sha256_hex(self._read(key, digest, kind))
        if actual != digest:
            raise self._corrupted(key, digest, actual, kind)

    def _call(self, operation: str, digest: str, kind: str, **params: Any) -> Any:
        from botocore.exceptions import ClientError

        try:
            return self._guard(
                digest, kind, getattr(self._client, operation), Bucket=self.bucket, **params
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            code = str(error.get("Code", status))
            if code in _DENIED or status == 403:
                raise self._unavailable(
                    f"access denied: {code}",
                    "Check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the "
                    "AWS config files) and that they may get, put and list in this bucket",
                    digest,
                    kind,
                ) from None
            if code in _UNAVAILABLE or (status >= 500 and status != 501):
                advice = (
                    "Create the bucket, or fix REGISTRY_STORE_URL"
                    if code == "NoSuchBucket"
                    else "Try again later; check the storage service's health"
                )
                raise self._unavailable(f"{code} (HTTP {status})", advice, digest, kind) from None
            raise _Refused(status, code) from None

    def _guard(self, digest: str, kind: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        """``call``, with botocore's network and credential failures as ``StoreUnavailable``."""
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )
        from botocore.exceptions import (
            IncompleteReadError,
            NoCredentialsError,
            PartialCredentialsError,
            ResponseStreamingError,
        )

        try:
            return call(*args, **kwargs)
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise self._unavailable(
                f"no usable credentials: {type(exc).__name__}",
                "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the AWS config files)",
                digest,
                kind,
            ) from None
        except (BotoConnectionError, ResponseStreamingError, IncompleteReadError) as exc:
            # The exception's own text holds the request URL; its class says enough.
            raise self._unavailable(
                f"no answer after {MAX_ATTEMPTS} attempts: {type(exc).__name__}",
                "Check that the storage service runs and REGISTRY_S3_ENDPOINT_URL points at it",
                digest,
                kind,
            ) from None

    def _is_known(self, key: str) -> bool:
        with self._lock:
            return key in self._known

    def _recently_absent(self, key: str) -> bool:
        with self._lock:
            until = self._absent.get(key)
            if until is not None and until <= time.monotonic():
                del self._absent[key]
                until = None
            return until is not None

    def _note_absent(self, key: str) -> None:
        with self._lock:
            self._absent[key] = time.monotonic() + ABSENT_TTL_S
            self._absent.move_to_end(key)
            while len(self._absent) > KNOWN_KEYS:
                self._absent.popitem(last=False)

    def _remember(self, key: str) -> None:
        # Keys are never overwritten, so "present" stays true; the bytes are still re-hashed on
        # every get(), so a key swapped behind our back is caught there.
        with self._lock:
            self._absent.pop(key, None)
            self._known[key] = None
            self._known.move_to_end(key)
            while len(self._known) > KNOWN_KEYS:
                self._known.popitem(last=False)

    def _unavailable(self, problem: str, advice: str, digest: str, kind: str) -> StoreUnavailable:
        return StoreUnavailable(
            self.where, self.endpoint, problem, advice=advice, digest=digest, kind=kind
        )

    def _store_error(self, refused: _Refused, what: str, digest: str, kind: str) -> StoreError:
        return StoreError(
            f"{what} in {self.where} at {self.endpoint}: the server answered {refused.code} "
            f"(HTTP {refused.status}); check the bucket's configuration",
            digest=digest,
            kind=kind,
        )

    def _too_large(self, key: str, size: int, digest: str, kind: str) -> StoreError:
        return StoreError(
            f"the object {key} in {self.where} holds {size} bytes or more, over the store's "
            f"limit of {self.max_object_bytes} (REGISTRY_MAX_UPLOAD_BYTES); no {kind} of this "
            "service is that large, so it was not read. Check what wrote it",
            digest=digest,
            kind=kind,
            size=size,
        )

    def _corrupted(self, key: str, expected: str, actual: str, kind: str) -> StoreError:
        return StoreError(
            f"stored {kind} {key} in {self.where} is corrupted: its bytes hash to "
            f"sha256:{actual[:12]}…, not sha256:{expected[:12]}…; it was left in place as "
            "evidence. Move it aside and put() the original bytes again",
            digest=expected,
            actual=actual,
            kind=kind,
            key=key,
        )


class _Refused(Exception):
    """An S3 error answer that the caller decides about (404, 412, 501...)."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"{code} (HTTP {status})")
        self.status, self.code = status, code
