"""registry.pull against real servers on loopback: a hostile mirror and a second registry service.

Every way a mirror can misbehave is a clear failure naming the source, nothing is stored, and
the next source is tried; the bytes that are kept are the anchored ones.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest
from apikit import REGISTRAR, make_card, make_checkpoint
from mirrorkit import HostileMirror, registry_service, stored_files

from registry.cli.main import main
from registry.core.digest import Digest, digest_bytes
from registry.core.policy import Policy
from registry.core.records import RegisterRequest, RevocationReason
from registry.core.store import FileStore
from registry.errors import InvalidInput, NotFound, NotVerified, PullFailed
from registry.pull import DigestLocks, HostGuard, pull, pull_through
from registry.verify import verify_digest

CAP = 1 << 20


@pytest.fixture(scope="module")
def checkpoint() -> bytes:
    return make_checkpoint(seed=41)


def _register(memory: Any, checkpoint: bytes) -> Digest:
    card = make_card(checkpoint)
    request = RegisterRequest(
        digest=digest_bytes(checkpoint),
        accuracy_bps=9250,
        test_set_digest=Digest.parse(hashlib.sha256(b"the held-out test split").hexdigest()),
        card_digest=digest_bytes(card),
        parent=None,
    )
    memory.client.register(request)
    return request.digest


def _pull(memory: Any, store_root: Path, digest: Digest, sources: list[str], **kw: Any) -> Any:
    options: dict[str, Any] = {"max_bytes": CAP, "timeout_s": 5.0, **kw}
    return pull(
        digest,
        sources,
        verdict_of=lambda d: verify_digest(memory.client, d, Policy()),
        store=FileStore(store_root),
        **options,
    )


@pytest.mark.parametrize(
    ("kind", "problem", "words"),
    [
        ("wrong", "wrong_digest", "hash to sha256:"),
        ("truncated", "truncated", "bytes it announced"),
        ("endless", "too_large", f"limit of {CAP} bytes"),
        ("huge", "too_large", f"limit of {CAP} bytes"),
        ("loop", "redirect_loop", "redirects in a loop"),
        ("stall", "timeout", "REGISTRY_PULL_TIMEOUT_S"),
        ("missing", "not_found", "HTTP 404"),
        ("broken", "http_error", "HTTP 500"),
    ],
)
def test_a_hostile_mirror_is_named_nothing_is_stored_and_the_next_source_is_tried(
    memory: Any, tmp_path: Path, checkpoint: bytes, kind: str, problem: str, words: str
) -> None:
    digest = _register(memory, checkpoint)
    store = tmp_path / "store"
    with HostileMirror(checkpoint) as mirror:
        with pytest.raises(PullFailed) as failed:
            _pull(memory, store, digest, [mirror.url(kind)], timeout_s=1.0)
        [attempt] = failed.value.attempts
        assert attempt["source"] == mirror.url(kind)
        assert attempt["problem"] == problem, attempt
        assert words in attempt["message"]
        assert mirror.url(kind) in failed.value.message
        assert stored_files(store) == []

        result = _pull(memory, store, digest, [mirror.url(kind), mirror.url("good")])
    assert result.source == mirror.url("good")
    assert [a["problem"] for a in result.attempts] == [problem]
    assert result.import_result.imported
    assert FileStore(store).get(digest.hex, "checkpoint") == checkpoint


def test_wrong_bytes_are_reported_with_both_digests(
    memory: Any, tmp_path: Path, checkpoint: bytes
) -> None:
    digest = _register(memory, checkpoint)
    with (
        HostileMirror(checkpoint, wrong=b"other bytes") as mirror,
        pytest.raises(PullFailed) as failed,
    ):
        _pull(memory, tmp_path / "store", digest, [mirror.url("wrong")])
    [attempt] = failed.value.attempts
    assert attempt["expected"] == str(digest)
    assert attempt["actual"] == str(digest_bytes(b"other bytes"))


def test_a_pull_from_another_registry_service_stores_the_anchored_bytes(
    memory: Any, tmp_path: Path
) -> None:
    import httpx

    checkpoint = make_checkpoint(seed=42)
    digest = digest_bytes(checkpoint)
    with registry_service(memory.client, tmp_path / "mirror") as base:
        files = {"checkpoint": ("m", checkpoint), "card": ("c", make_card(checkpoint))}
        registered = httpx.post(f"{base}/models", files=files, headers=REGISTRAR, timeout=30)
        assert registered.status_code == 201, registered.text
        result = _pull(memory, tmp_path / "store", digest, [base + "/"])
        again = _pull(memory, tmp_path / "store", digest, [base + "/"])
    assert result.source == base + "/" and result.import_result.imported
    assert again.source is None and not again.import_result.imported  # nothing fetched
    assert FileStore(tmp_path / "store").get(digest.hex, "checkpoint") == checkpoint


def test_a_folder_or_a_file_on_disk_is_a_source(
    memory: Any, tmp_path: Path, checkpoint: bytes
) -> None:
    digest = _register(memory, checkpoint)
    folder = tmp_path / "usb"
    folder.mkdir()
    (folder / f"{digest.hex}.safetensors").write_bytes(checkpoint)
    result = _pull(memory, tmp_path / "a", digest, [str(tmp_path / "nowhere"), str(folder)])
    assert result.source == str(folder)
    assert result.attempts[0]["problem"] == "not_found"
    file_result = _pull(memory, tmp_path / "b", digest, [str(folder / f"{digest.hex}.safetensors")])
    assert file_result.import_result.imported


def test_unknown_and_revoked_digests_are_refused_before_any_source_is_asked(
    memory: Any, tmp_path: Path, checkpoint: bytes
) -> None:
    unknown = digest_bytes(b"never registered")
    with HostileMirror(checkpoint) as mirror:
        with pytest.raises(NotFound):
            _pull(memory, tmp_path / "store", unknown, [mirror.url("good")])
        digest = _register(memory, checkpoint)
        memory.client.revoke(digest, RevocationReason.parse("safety-issue"), None)
        with pytest.raises(NotVerified) as refused:
            _pull(memory, tmp_path / "store", digest, [mirror.url("good")])
    assert refused.value.verdict.reason == "revoked"
    assert mirror.requests["good"] == 0
    assert stored_files(tmp_path / "store") == []


def test_the_guard_refuses_loopback_and_paths_unless_configured_as_mirrors(
    memory: Any, tmp_path: Path, checkpoint: bytes
) -> None:
    digest = _register(memory, checkpoint)
    with HostileMirror(checkpoint) as mirror:
        with pytest.raises(PullFailed) as failed:
            _pull(memory, tmp_path / "s", digest, [mirror.url("good")], guard=HostGuard())
        assert failed.value.attempts[0]["problem"] == "address_refused"
        assert failed.value.attempts[0]["address"] == "127.0.0.1"
        with pytest.raises(InvalidInput):
            _pull(memory, tmp_path / "s", digest, [str(tmp_path)], guard=HostGuard())
        assert mirror.requests["good"] == 0
        assert stored_files(tmp_path / "s") == []
        allowed = HostGuard([mirror.base + "/"])
        result = _pull(memory, tmp_path / "s", digest, [mirror.url("good")], guard=allowed)
    assert result.import_result.imported


def test_concurrent_pull_throughs_of_one_digest_fetch_it_once(
    memory: Any, tmp_path: Path, checkpoint: bytes
) -> None:
    digest = _register(memory, checkpoint)
    store = FileStore(tmp_path / "store")
    locks = DigestLocks()
    results: list[Any] = []

    def run() -> None:
        results.append(
            pull_through(
                digest,
                [mirror.url("gate")],
                verdict_of=lambda d: verify_digest(memory.client, d, Policy()),
                store=store,
                max_bytes=CAP,
                timeout_s=30.0,
                locks=locks,
            )
        )

    with HostileMirror(checkpoint) as mirror:
        first = threading.Thread(target=run)
        first.start()
        assert mirror.arrived.wait(30)  # the first pull is at the mirror, holding the lock
        second = threading.Thread(target=run)
        second.start()
        while locks.waiting(digest) < 1:  # the second waits behind it
            assert second.is_alive()
        mirror.release.set()
        first.join(30)
        second.join(30)
    assert mirror.requests["gate"] == 1
    assert sum(r is not None for r in results) == 1  # one pulled; the other found it stored
    assert store.get(digest.hex, "checkpoint") == checkpoint


@pytest.mark.anvil
def test_cli_pull_stores_into_the_service_store_from_the_first_right_source(
    anvil: Any, tmp_path: Path, checkpoint: bytes, capsys: Any, monkeypatch: Any
) -> None:
    digest = _register(anvil, checkpoint)
    monkeypatch.delenv("REGISTRY_MIRRORS", raising=False)
    flags = ["--rpc-url", anvil.endpoint, "--contract", anvil.client.address]
    with HostileMirror(checkpoint) as mirror:
        sources = ["--from", mirror.url("wrong"), "--from", mirror.url("good")]
        code = main(["pull", str(digest), *sources, "--data-dir", str(tmp_path), *flags])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"pulled {digest} from {mirror.url('good')}" in out
    assert "skipped" in out and "hash to sha256:" in out
    assert FileStore(tmp_path / "store").get(digest.hex, "checkpoint") == checkpoint

    unknown = digest_bytes(b"never registered")
    code = main(
        ["pull", str(unknown), "--from", str(tmp_path), "--data-dir", str(tmp_path), *flags]
    )
    assert code == 1
    assert "is registered on this chain" in capsys.readouterr().err


# --- s3:// sources, against a real S3 API on loopback (moto's server mode) ---------------------

S3_SECRET = "s3cr3t-never-shown-in-a-pull-message"


@pytest.fixture(scope="module")
def s3_endpoint() -> Any:
    pytest.importorskip("boto3", reason="s3:// sources need the [s3] extra")
    moto_server = pytest.importorskip("moto.server", reason="needs moto[server] ([dev])")
    from registry.devnet import free_port

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A fresh bucket on the loopback server, dummy credentials and no user's AWS files."""
    import uuid

    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    name = f"models-{uuid.uuid4().hex[:12]}"
    raw = boto3.session.Session().client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    raw.create_bucket(Bucket=name)
    return name, raw


def test_an_s3_object_or_folder_is_a_source_read_through_the_configured_endpoint(
    memory: Any, tmp_path: Path, checkpoint: bytes, s3_endpoint: str, s3_bucket: Any
) -> None:
    digest = _register(memory, checkpoint)
    bucket, raw = s3_bucket
    raw.put_object(Bucket=bucket, Key="hub/lenet.safetensors", Body=checkpoint)
    raw.put_object(Bucket=bucket, Key=f"site/{digest.hex}.safetensors", Body=checkpoint)
    source = f"s3://{bucket}/hub/lenet.safetensors"
    result = _pull(memory, tmp_path / "a", digest, [source], s3_endpoint_url=s3_endpoint)
    assert result.source == source and result.import_result.imported
    assert FileStore(tmp_path / "a").get(digest.hex, "checkpoint") == checkpoint
    folder = f"s3://{bucket}/site/"
    result = _pull(memory, tmp_path / "b", digest, [folder], s3_endpoint_url=s3_endpoint)
    assert result.source == folder
    assert FileStore(tmp_path / "b").get(digest.hex, "checkpoint") == checkpoint


@pytest.mark.parametrize(
    ("case", "problem", "words"),
    [
        ("wrong", "wrong_digest", "hash to sha256:"),
        ("missing", "not_found", "NoSuchKey"),
        ("no-bucket", "not_found", "NoSuchBucket"),
        ("too-large", "too_large", f"limit of {CAP} bytes"),
        ("unreachable", "unreachable", "could not be reached"),
    ],
)
def test_a_failing_s3_source_is_named_without_credentials_and_the_next_is_tried(
    memory: Any,
    tmp_path: Path,
    checkpoint: bytes,
    s3_endpoint: str,
    s3_bucket: Any,
    case: str,
    problem: str,
    words: str,
) -> None:
    from registry.devnet import free_port

    digest = _register(memory, checkpoint)
    bucket, raw = s3_bucket
    raw.put_object(Bucket=bucket, Key="wrong", Body=b"not the checkpoint")
    raw.put_object(Bucket=bucket, Key="too-large", Body=bytes(CAP + 1))
    raw.put_object(Bucket=bucket, Key="good", Body=checkpoint)
    endpoint = s3_endpoint
    source = f"s3://{bucket}/{case}"
    if case == "no-bucket":
        source = f"s3://{bucket}-gone/good"
    elif case == "unreachable":
        endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = tmp_path / "store"
    with pytest.raises(PullFailed) as failed:
        _pull(memory, store, digest, [source], s3_endpoint_url=endpoint)
    [attempt] = failed.value.attempts
    assert attempt["source"] == source
    assert attempt["problem"] == problem, attempt
    assert words in attempt["message"]
    if case != "wrong":
        assert source.removeprefix("s3://").split("/")[0] in attempt["message"]
    assert S3_SECRET not in str(failed.value.attempts) and "testing-access-key" not in str(
        failed.value.attempts
    )
    assert stored_files(store) == []
    if case == "unreachable":
        return  # one endpoint per pull: the next source would be unreachable too
    good = f"s3://{bucket}/good"
    result = _pull(memory, store, digest, [source, good], s3_endpoint_url=endpoint)
    assert result.source == good
    assert [a["problem"] for a in result.attempts] == [problem]
    assert FileStore(store).get(digest.hex, "checkpoint") == checkpoint


def test_the_guard_takes_s3_sources_only_inside_a_configured_s3_mirror(
    memory: Any, tmp_path: Path, checkpoint: bytes, s3_endpoint: str, s3_bucket: Any
) -> None:
    digest = _register(memory, checkpoint)
    bucket, raw = s3_bucket
    raw.put_object(Bucket=bucket, Key="shared/model", Body=checkpoint)
    raw.put_object(Bucket=bucket, Key="private/model", Body=checkpoint)
    guard = HostGuard([f"s3://{bucket}/shared/"])
    refused = [
        f"s3://{bucket}/private/model",  # the mirror's bucket, outside its prefix
        f"s3://{bucket}/shared-not/model",  # a prefix that only starts alike
        f"s3://{bucket}/shared/../private/model",  # climbing out of it
        f"s3://{bucket}-other/shared/model",  # another bucket
    ]
    for source in refused:
        with pytest.raises(InvalidInput) as error:
            _pull(memory, tmp_path / "s", digest, [source], guard=guard)
        assert "outside the configured mirrors" in error.value.message
    with pytest.raises(InvalidInput):  # no s3 mirror: no caller-named bucket at all
        _pull(memory, tmp_path / "s", digest, [f"s3://{bucket}/shared/model"], guard=HostGuard())
    assert stored_files(tmp_path / "s") == []
    source = f"s3://{bucket}/shared/model"
    result = _pull(
        memory, tmp_path / "s", digest, [source], guard=guard, s3_endpoint_url=s3_endpoint
    )
    assert result.source == source and result.import_result.imported
