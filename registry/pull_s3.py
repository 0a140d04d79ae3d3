"""Reading one ``s3://bucket/key`` pull source, for ``registry.pull``.

A site that keeps its models in a bucket (or a hub that publishes them there) is a source like
any other: the digest is anchored, so the bucket is not trusted. It is reached the way the S3
store reaches one (``registry.core.store_s3``): the endpoint of ``REGISTRY_S3_ENDPOINT_URL``,
checked the same way, credentials the boto3 way (``AWS_*`` variables or the AWS config files),
path-style addressing for a self-hosted server, and explicit timeouts instead of botocore's
defaults (60 s reads, retries without end in some modes), here bounded by the pull's own
deadline. The size cap is checked from the object's length and again while reading, so an object
that lies about its size costs one byte over the cap at most.

Every failure is an ``S3ReadFailed`` whose message names the bucket, the key and the endpoint
(scheme, host and port only) and never repeats botocore's text, which holds the request URL. One
boto3 client per endpoint and timeouts is kept for the process: building one costs tens of
milliseconds, more than reading a LeNet checkpoint from a local server.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

from registry.core.endpoint import redact_endpoint
from registry.core.store_s3 import AWS_ENDPOINT, CONNECT_TIMEOUT_S, MAX_ATTEMPTS, check_endpoint
from registry.errors import ConfigurationError

CHUNK_BYTES = 64 * 1024
# Answers that say the object or its bucket is not there, as opposed to "cannot be asked".
_MISSING = {"NoSuchKey", "NoSuchBucket", "NotFound", "404"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "403"}

_clients: dict[tuple[str | None, float, float], Any] = {}
_clients_lock = threading.Lock()


class S3ReadFailed(Exception):
    """The source did not give the bytes; ``problem`` is a code, ``message`` a sentence."""

    def __init__(self, problem: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.problem, self.message, self.details = problem, message, details


def read_s3(url: str, max_bytes: int, timeout_s: float, endpoint_url: str | None) -> bytes:
    """The bytes of the object ``url`` names, at most ``max_bytes``, within ``timeout_s``."""
    parts = urlsplit(url)
    bucket, key = parts.netloc, parts.path.removeprefix("/")
    if not bucket or not key or "@" in bucket or parts.query or parts.fragment:
        raise S3ReadFailed(
            "unsupported",
            f"{url!r} is not s3://bucket/key (no credentials, query or fragment; credentials go "
            "in AWS_* variables)"
            if "@" not in url
            else "an s3:// URL with credentials in it",
        )
    endpoint = redact_endpoint(endpoint_url) if endpoint_url else AWS_ENDPOINT
    where = f"s3://{bucket}/{key} at {endpoint}"
    deadline = time.monotonic() + timeout_s
    client = _client(endpoint_url, timeout_s)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        raise _answered(exc, where) from None
    except BotoCoreError as exc:
        raise _failed(exc, where, timeout_s) from None
    body = response["Body"]
    try:
        size = response.get("ContentLength")
        if isinstance(size, int) and size > max_bytes:
            raise _too_large(where, size, max_bytes)
        data = bytearray()
        while True:
            if time.monotonic() >= deadline:
                raise _stalled(where, timeout_s)
            chunk = body.read(CHUNK_BYTES)
            if not chunk:
                break
            data += chunk
            if len(data) > max_bytes:
                raise _too_large(where, len(data), max_bytes)
    except BotoCoreError as exc:
        raise _failed(exc, where, timeout_s) from None
    finally:
        body.close()
    if isinstance(size, int) and len(data) != size:
        raise S3ReadFailed(
            "truncated",
            f"{where} sent {len(data)} of the {size} bytes it announced",
            got=len(data),
            declared=size,
        )
    return bytes(data)


def _client(endpoint_url: str | None, timeout_s: float) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise S3ReadFailed(
            "unsupported",
            "s3:// sources need boto3, which is not installed; install the extra: "
            "pip install 'medical-model-registry[s3]'",
        ) from None
    if endpoint_url is not None:
        check_endpoint(endpoint_url)
    connect = min(CONNECT_TIMEOUT_S, timeout_s)
    cache_key = (endpoint_url, connect, timeout_s)
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            config = Config(
                connect_timeout=connect,
                read_timeout=timeout_s,
                retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
                s3={"addressing_style": "path"} if endpoint_url else {},
            )
            try:
                # A session of its own: boto3's default one is shared and not thread-safe.
                client = boto3.session.Session().client(
                    "s3", endpoint_url=endpoint_url, config=config
                )
            except ValueError:  # botocore's "Invalid endpoint", which repeats the whole URL
                raise ConfigurationError(
                    f"REGISTRY_S3_ENDPOINT_URL ({redact_endpoint(endpoint_url or '')}) is not a "
                    "URL botocore can use; give http(s)://host[:port]",
                    problem="invalid endpoint",
                ) from None
            _clients[cache_key] = client
    return client


def _answered(exc: Any, where: str) -> S3ReadFailed:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    code = str(error.get("Code", status))
    if code in _MISSING or status == 404:
        what = "no such bucket" if code == "NoSuchBucket" else "no such key"
        return S3ReadFailed("not_found", f"{where} answered {code} ({what})", status=status)
    if code in _DENIED or status == 403:
        return S3ReadFailed(
            "access_denied",
            f"{where} refused access ({code}); check the credentials (AWS_* variables or the AWS "
            "config files) and that they may get objects in this bucket",
            status=status,
        )
    return S3ReadFailed("s3_error", f"{where} answered {code} (HTTP {status})", status=status)


def _failed(exc: Exception, where: str, timeout_s: float) -> S3ReadFailed:
    from botocore.exceptions import (
        ConnectTimeoutError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return _stalled(where, timeout_s)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return S3ReadFailed(
            "no_credentials",
            f"{where} cannot be asked: no usable credentials ({type(exc).__name__}); set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the AWS config files)",
        )
    # The exception's own text holds the request URL; its class says enough.
    return S3ReadFailed(
        "unreachable",
        f"{where} could not be reached ({type(exc).__name__}, after {MAX_ATTEMPTS} attempts)",
    )


def _stalled(where: str, timeout_s: float) -> S3ReadFailed:
    return S3ReadFailed(
        "timeout",
        f"{where} did not deliver the object within {timeout_s:g} s (REGISTRY_PULL_TIMEOUT_S)",
        timeout_s=timeout_s,
    )


def _too_large(where: str, size: int, limit: int) -> S3ReadFailed:
    return S3ReadFailed(
        "too_large",
        f"{where} holds more than the limit of {limit} bytes (at least {size}; "
        "REGISTRY_MAX_UPLOAD_BYTES)",
        size=size,
        limit=limit,
    )
