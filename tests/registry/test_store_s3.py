"""The S3 store against a real S3 HTTP API on loopback (moto's server mode), and the folder store
against the same contract: content-addressed, never overwritten, re-hashed on every read.

Every S3 test gets a bucket of its own on one server; the tests that need the server gone start
one of their own and stop it, or point at a port nothing listens on.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3", reason="the S3 store needs the [s3] extra")
moto_server = pytest.importorskip("moto.server", reason="the S3 tests need moto[server] ([dev])")

from storekit import put_at_once  # noqa: E402

from registry.config import Settings  # noqa: E402
from registry.core.store import CheckpointStore, FileStore  # noqa: E402
from registry.core.store_s3 import S3Store, parse_store_url  # noqa: E402
from registry.core.stores import open_store  # noqa: E402
from registry.errors import (  # noqa: E402
    ConfigurationError,
    InvalidDigest,
    NotFound,
    PayloadTooLarge,
    StoreError,
    StoreUnavailable,
)

DATA = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(256))
DIGEST = hashlib.sha256(DATA).hexdigest()
SECRET = "s3cr3t-never-shown-0123456789"
CAP = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> tuple[Any, str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    server, url = start_server()
    yield url
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Dummy credentials, and no user's AWS config files in the way.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


def raw_client(endpoint: str) -> Any:
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1")


def new_bucket(endpoint: str) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    raw_client(endpoint).create_bucket(Bucket=name)
    return name


def s3_store(endpoint: str, bucket: str, prefix: str = "site-a", **kwargs: Any) -> S3Store:
    return S3Store(bucket, prefix, endpoint_url=endpoint, max_object_bytes=CAP, **kwargs)


# --- one contract, both backends ---------------------------------------------------------------


@dataclass
class Backend:
    """A store, and a way around it to its raw objects (to tamper with them)."""

    store: CheckpointStore
    write_raw: Callable[[str, str, bytes], None]  # kind, digest, bytes
    read_raw: Callable[[str, str], bytes]
    where: Callable[[str, str], str]  # how an error names the object


@pytest.fixture(params=["folder", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "folder":
        root = tmp_path / "store"

        def path(kind: str, digest: str) -> Path:
            return root / kind / digest[:2] / digest[2:]

        def write(kind: str, digest: str, data: bytes) -> None:
            path(kind, digest).parent.mkdir(parents=True, exist_ok=True)
            if path(kind, digest).exists():
                path(kind, digest).chmod(0o644)
            path(kind, digest).write_bytes(data)

        return Backend(
            FileStore(root),
            write,
            lambda k, d: path(k, d).read_bytes(),
            lambda k, d: str(path(k, d)),
        )
    endpoint = request.getfixturevalue("s3_url")
    bucket = new_bucket(endpoint)
    store = s3_store(endpoint, bucket)
    raw = raw_client(endpoint)
    return Backend(
        store,
        lambda k, d, data: raw.put_object(Bucket=bucket, Key=store.key(d, k), Body=data),
        lambda k, d: raw.get_object(Bucket=bucket, Key=store.key(d, k))["Body"].read(),
        lambda k, d: store.key(d, k),
    )


def test_put_then_get_returns_the_same_bytes_under_their_sha256(backend: Backend) -> None:
    store = backend.store
    assert store.put(DATA, "checkpoint") == DIGEST
    assert store.get(DIGEST, "checkpoint") == DATA
    assert store.has(DIGEST, "checkpoint")
    assert backend.read_raw("checkpoint", DIGEST) == DATA


def test_put_of_the_same_bytes_again_is_a_no_op(backend: Backend) -> None:
    assert backend.store.put(DATA, "card") == DIGEST
    assert backend.store.put(bytearray(DATA), "card") == DIGEST
    assert backend.store.get(DIGEST, "card") == DATA


def test_kinds_are_separate_namespaces(backend: Backend) -> None:
    backend.store.put(DATA, "checkpoint")
    assert not backend.store.has(DIGEST, "card")
    with pytest.raises(NotFound):
        backend.store.get(DIGEST, "card")


def test_get_of_a_missing_object_raises_not_found_naming_the_digest(backend: Backend) -> None:
    with pytest.raises(NotFound) as info:
        backend.store.get("ab" * 32, "checkpoint")
    assert "ab" * 32 in str(info.value)
    assert info.value.details["digest"] == "ab" * 32
    assert not backend.store.has("ab" * 32, "checkpoint")


def test_get_refuses_an_object_whose_bytes_were_swapped_naming_it(backend: Backend) -> None:
    backend.store.put(DATA, "checkpoint")
    backend.write_raw("checkpoint", DIGEST, DATA[:-1] + b"\x00")
    with pytest.raises(StoreError, match="corrupted") as info:
        backend.store.get(DIGEST, "checkpoint")
    assert backend.where("checkpoint", DIGEST) in str(info.value)
    assert info.value.details["digest"] == DIGEST
    assert info.value.details["actual"] == hashlib.sha256(DATA[:-1] + b"\x00").hexdigest()


def test_put_never_overwrites_other_bytes_under_the_key_it_would_write(backend: Backend) -> None:
    backend.write_raw("checkpoint", DIGEST, b"planted before the real bytes came")
    with pytest.raises(StoreError, match="corrupted"):
        backend.store.put(DATA, "checkpoint")
    # Left in place as evidence, not silently repaired.
    assert backend.read_raw("checkpoint", DIGEST) == b"planted before the real bytes came"


@pytest.mark.parametrize(
    "digest",
    ["../" * 21 + "a", "ab/" + "0" * 61, DIGEST.upper(), "sha256:" + DIGEST, DIGEST[:63], ""],
)
def test_digests_that_are_not_64_lowercase_hex_are_refused(backend: Backend, digest: str) -> None:
    with pytest.raises(InvalidDigest):
        backend.store.get(digest, "checkpoint")
    with pytest.raises(InvalidDigest):
        backend.store.has(digest, "card")


def test_unknown_kinds_and_non_bytes_are_refused(backend: Backend) -> None:
    with pytest.raises(ValueError, match="unknown object kind"):
        backend.store.put(DATA, "../etc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown object kind"):
        backend.store.get(DIGEST, "model")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        backend.store.put("text", "card")  # type: ignore[arg-type]


def test_concurrent_puts_of_the_same_bytes_all_succeed(backend: Backend) -> None:
    data = os.urandom(256 << 10)
    results = put_at_once(backend.store, data, 8)
    digest = hashlib.sha256(data).hexdigest()
    assert results == [digest] * 8
    assert backend.store.get(digest, "checkpoint") == data


# --- S3 only ---------------------------------------------------------------------------------


def test_objects_live_under_prefix_kind_and_the_digest_fanned_out(s3_url: str) -> None:
    bucket = new_bucket(s3_url)
    s3_store(s3_url, bucket, "clinics/north").put(DATA, "card")
    keys = [o["Key"] for o in raw_client(s3_url).list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"clinics/north/card/{DIGEST[:2]}/{DIGEST[2:]}"]


def test_two_services_on_one_bucket_see_each_others_objects(s3_url: str) -> None:
    bucket = new_bucket(s3_url)
    north, south = s3_store(s3_url, bucket, "shared"), s3_store(s3_url, bucket, "shared")
    assert not south.has(DIGEST, "checkpoint")
    north.put(DATA, "checkpoint")
    assert south.has(DIGEST, "checkpoint")
    assert south.get(DIGEST, "checkpoint") == DATA
    assert south.put(DATA, "checkpoint") == DIGEST  # the same bytes again: both succeed


def test_the_server_refuses_to_overwrite_a_key_put_with_if_none_match(s3_url: str) -> None:
    # What put() relies on when another service wrote the key between its HEAD and its PUT.
    from botocore.exceptions import ClientError

    bucket = new_bucket(s3_url)
    store = s3_store(s3_url, bucket)
    store.put(DATA, "checkpoint")
    with pytest.raises(ClientError) as info:
        raw_client(s3_url).put_object(
            Bucket=bucket, Key=store.key(DIGEST, "checkpoint"), Body=b"other", IfNoneMatch="*"
        )
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert store.get(DIGEST, "checkpoint") == DATA


def test_reads_are_bounded_by_the_size_cap(s3_url: str) -> None:
    bucket = new_bucket(s3_url)
    store = s3_store(s3_url, bucket)
    big = os.urandom(CAP + 1)
    digest = hashlib.sha256(big).hexdigest()
    with pytest.raises(PayloadTooLarge):
        store.put(big, "checkpoint")
    raw_client(s3_url).put_object(Bucket=bucket, Key=store.key(digest, "checkpoint"), Body=big)
    with pytest.raises(StoreError, match="over the store's limit") as info:
        store.get(digest, "checkpoint")
    assert info.value.details["size"] == CAP + 1


def test_an_unreachable_endpoint_is_store_unavailable_naming_it_without_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()  # nothing listens there
    store = s3_store(f"http://127.0.0.1:{port}", "models", max_attempts=2)
    for call in (
        lambda: store.get(DIGEST, "checkpoint"),
        lambda: store.has(DIGEST, "checkpoint"),
        lambda: store.put(DATA, "checkpoint"),
    ):
        with pytest.raises(StoreUnavailable) as info:
            call()
        assert info.value.code == "store_unavailable"
        assert info.value.endpoint == f"http://127.0.0.1:{port}"
        assert f"http://127.0.0.1:{port}" in str(info.value)
        assert "s3://models/site-a" in str(info.value)
        assert info.value.digest == DIGEST
        assert SECRET not in repr(info.value.to_dict())


def test_an_endpoint_with_credentials_in_it_is_refused_without_showing_them() -> None:
    for url in (f"http://user:{SECRET}@127.0.0.1:9000", "http://127.0.0.1:9000/?key=" + SECRET):
        with pytest.raises(ConfigurationError) as info:
            s3_store(url, "models")
        assert SECRET not in str(info.value)
        assert "http://127.0.0.1:9000" in str(info.value)


def test_access_denied_is_store_unavailable_saying_to_check_the_credentials(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moto.settings

    bucket = new_bucket(s3_url)
    store = s3_store(s3_url, bucket)
    store.put(DATA, "card")
    # moto then checks every request's key against its IAM: ours is no user it knows.
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    fresh = s3_store(s3_url, bucket)
    for call in (lambda: fresh.get(DIGEST, "card"), lambda: fresh.has(DIGEST, "card")):
        with pytest.raises(StoreUnavailable, match="Check the credentials") as info:
            call()
        assert info.value.problem.startswith("access denied")
        assert SECRET not in str(info.value)


def test_a_missing_bucket_is_store_unavailable_saying_to_create_it(s3_url: str) -> None:
    store = s3_store(s3_url, "no-such-bucket-here")
    with pytest.raises(StoreUnavailable, match="Create the bucket") as info:
        store.get(DIGEST, "checkpoint")
    assert "NoSuchBucket" in info.value.problem


def test_store_url_is_parsed_and_bad_ones_refused_without_echoing_credentials() -> None:
    assert parse_store_url("s3://clinic-models/registry/v1/") == ("clinic-models", "registry/v1")
    assert parse_store_url("s3://clinic-models") == ("clinic-models", "")
    for bad in ("s3://Bad_Bucket/x", "s3://ok-bucket/a/../b", "s3://ok-bucket/a//b", "http://b/x"):
        with pytest.raises(ConfigurationError):
            parse_store_url(bad)
    with pytest.raises(ConfigurationError) as info:
        parse_store_url(f"s3://key:{SECRET}@bucket/x")
    assert SECRET not in str(info.value)


def test_open_store_picks_the_folder_or_the_bucket_from_the_settings(
    s3_url: str, tmp_path: Path
) -> None:
    folder = open_store(Settings(data_dir=tmp_path))
    assert isinstance(folder, FileStore)
    bucket = new_bucket(s3_url)
    settings = Settings(
        data_dir=tmp_path,
        store_url=f"s3://{bucket}/svc",
        s3_endpoint_url=s3_url,
        max_upload_bytes=7,
    )
    store = open_store(settings)
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix, store.max_object_bytes) == (bucket, "svc", 7)
    with pytest.raises(ConfigurationError):
        open_store(Settings(data_dir=tmp_path, store_url=f"ftp://u:{SECRET}@host/x"))


# --- the service on an S3 store ------------------------------------------------------------------


def test_the_service_registers_and_predicts_from_s3_and_verify_survives_an_outage(
    make_api: Callable[..., Any],
) -> None:
    from apikit import assert_error, make_card, make_checkpoint, png

    server, endpoint = start_server()
    try:
        bucket = new_bucket(endpoint)
        api = make_api(store_url=f"s3://{bucket}/clinic", s3_endpoint_url=endpoint)
        loaded = api.registered_model(seed=11)[1].removeprefix("sha256:")
        assert api.predict_png(loaded, png()).status_code == 200
        put_here = api.registered_model(seed=12)[1].removeprefix("sha256:")
        keys = {o["Key"] for o in raw_client(endpoint).list_objects_v2(Bucket=bucket)["Contents"]}
        assert f"clinic/checkpoint/{loaded[:2]}/{loaded[2:]}" in keys
        # A model another service registered (its own folder store): this one never saw it.
        elsewhere = make_checkpoint(13)
        assert make_api().register(elsewhere, make_card(elsewhere)).status_code == 201
    finally:
        server.stop()

    # S3 is gone. A verdict is a chain read: it still answers; "stored" says what can be told.
    verdict = api.verify(elsewhere)
    assert verdict.status_code == 200, verdict.text
    assert verdict.json()["verified"] is True
    assert verdict.json()["stored"] is False
    # A model whose bytes this worker has not loaded cannot be read: 503, naming the endpoint.
    for digest in (put_here, hashlib.sha256(elsewhere).hexdigest()):
        error = assert_error(api.predict_png(digest, png()), 503, "store_unavailable")
        assert endpoint in error["message"]
        assert SECRET not in error["message"] and bucket not in error["message"]
        assert error["details"]["digest"] == digest
    # The model loaded before the outage is still served from memory, still gated by the chain.
    assert api.predict_png(loaded, png()).status_code == 200


def test_a_listing_believes_absent_briefly_while_has_get_and_put_ask_the_bucket(
    s3_url: str,
) -> None:
    # A catalogue page asks of every record on it: one HEAD per absent key each time would make
    # pages seconds long on a remote bucket.
    bucket = new_bucket(s3_url)
    reader, writer = s3_store(s3_url, bucket), s3_store(s3_url, bucket)
    assert not reader.has_maybe_stale(DIGEST, "checkpoint")

    writer.put(DATA, "checkpoint")

    assert not reader.has_maybe_stale(DIGEST, "checkpoint")  # within ABSENT_TTL_S
    assert reader.has(DIGEST, "checkpoint")  # the exact answer asks the bucket, and learns
    assert reader.has_maybe_stale(DIGEST, "checkpoint")


def test_absent_expires_and_the_bucket_is_asked_again(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry.core import store_s3

    monkeypatch.setattr(store_s3, "ABSENT_TTL_S", 0.0)
    bucket = new_bucket(s3_url)
    reader, writer = s3_store(s3_url, bucket), s3_store(s3_url, bucket)
    assert not reader.has_maybe_stale(DIGEST, "card")

    writer.put(DATA, "card")

    assert reader.has_maybe_stale(DIGEST, "card")
