"""The audit trail the service writes, `registry audit verify`, and `registry serve`'s settings."""

from __future__ import annotations

import errno
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from apikit import READER, REGISTRAR_KEY, REVOKER_KEY, Api, assert_error, png

from registry.api.auth import key_id
from registry.api.server import SETTINGS_ENV, settings_from_json, settings_to_json, worker_app
from registry.cli import build_parser, main
from registry.config import Settings
from registry.core import audit
from registry.core.audit_key import AuditKey, load_key
from registry.errors import AuditLogCorrupt, ConfigurationError


def service_key(api: Api) -> AuditKey:
    """The key the service keyed its log with (created beside the log at start-up)."""
    return load_key(api.settings.data_dir / "audit.key")


def test_register_revoke_verify_and_predict_each_leave_one_audit_entry(api: Api) -> None:
    checkpoint, digest = api.registered_model()
    api.verify(checkpoint)
    api.predict_png(digest, png(), png(), png())
    api.revoke(digest, "regulatory")
    time.sleep(api.settings.validity_ttl_s + 0.05)
    api.http.post(f"/models/{digest}/predict", files=[("images", ("x.png", png()))], headers=READER)

    header, *entries = api.audit_entries()

    assert (header["event"], header["mac"], header["key_id"]) == (
        "log.started",
        "hmac-sha256",
        service_key(api).id,
    )
    assert [e["event"] for e in entries] == ["register", "verify", "predict", "revoke", "predict"]
    register, verify, predict, revoke, refused = entries
    assert register["who"] == key_id(REGISTRAR_KEY) and register["outcome"] == "registered"
    assert register["tx"].startswith("0x") and register["block"] > 0
    assert verify["outcome"] == "verified" and verify["who"].startswith("ip:")
    assert predict["images"] == 3 and predict["outcome"] == "predicted"
    assert revoke["who"] == key_id(REVOKER_KEY) and revoke["reason"] == "regulatory"
    assert revoke["block"] > register["block"]
    assert refused["outcome"] == "not_verified" and refused["who"] == key_id(READER["X-API-Key"])
    assert all(e["digest"] == digest for e in entries)
    assert audit.verify(api.settings.data_dir / "audit.log", service_key(api)).entries == 6


def test_audit_verify_names_the_line_that_was_edited(api: Api) -> None:
    checkpoint, _ = api.registered_model()
    api.verify(checkpoint)
    api.verify(checkpoint)
    path = api.settings.data_dir / "audit.log"
    lines = path.read_text().splitlines()
    edited = json.loads(lines[2])
    edited["outcome"] = "unknown"  # someone rewrites history: "it was never verified"
    lines[2] = json.dumps(edited, sort_keys=True, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(AuditLogCorrupt) as caught:
        audit.verify(path, service_key(api))

    assert caught.value.line == 3


def test_the_audit_verify_command_checks_a_log_and_fails_on_a_broken_one(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint, _ = api.registered_model()
    api.verify(checkpoint)
    path = api.settings.data_dir / "audit.log"

    assert main(["--json", "audit", "verify", str(path)]) == 0  # the key beside the log
    last = api.audit_entries()[-1]
    assert json.loads(capsys.readouterr().out) == {
        "file": str(path),
        "entries": 3,
        "intact": True,
        "key_id": service_key(api).id,
        "head": f"3:{last['hash']}",
    }
    assert main(["--json", "audit", "head", str(path)]) == 0
    head = json.loads(capsys.readouterr().out)
    assert head == {
        "file": str(path),
        "seq": 3,
        "hash": last["hash"],
        "time": last["time"],
        "key_id": service_key(api).id,
        "anchor": f"3:{last['hash']}",
    }
    assert main(["audit", "head", str(path)]) == 0
    assert capsys.readouterr().out == f"3:{last['hash']} {last['time']} key {head['key_id']}\n"
    anchored = ["audit", "verify", str(path), "--anchor", head["anchor"]]
    assert main(anchored) == 0

    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))  # last line cut
    capsys.readouterr()
    assert main(anchored) == 1
    assert "lines were removed from the end" in capsys.readouterr().err


def test_the_audit_commands_need_the_key_the_log_was_written_with(
    api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = api.settings.data_dir / "audit.log"
    other = tmp_path / "other.key"
    other_id = load_key(other, create=True).id
    for action in ("verify", "head"):
        assert main(["audit", action, str(path), "--key-file", str(other)]) == 1
        err = capsys.readouterr().err
        assert f"keyed with key id '{service_key(api).id}', you gave key id '{other_id}'" in err
    elsewhere = tmp_path / "copy" / "audit.log"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(path.read_bytes())
    assert main(["audit", "verify", str(elsewhere)]) == 2  # no key beside the copy: not created
    assert "no audit key" in capsys.readouterr().err
    assert not (elsewhere.parent / "audit.key").exists()
    key = str(api.settings.data_dir / "audit.key")
    assert main(["audit", "verify", str(elsewhere), "--key-file", key]) == 0
    assert main(["audit", "head", str(path), "--anchor", "nonsense"]) == 2


def test_an_unkeyed_log_stops_the_service_until_rotate_seals_it_into_a_keyed_one(
    memory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from apikit import settings_for
    from fastapi.testclient import TestClient

    from registry.api import create_app

    settings = settings_for(tmp_path / "data")
    path = settings.data_dir / "audit.log"
    path.parent.mkdir()
    # What the release before keys wrote: no header, plain SHA-256 over the same format.
    old_entry = {"event": "verify", "outcome": "verified", "seq": 1, "who": "ip:10.0.0.1"}
    old_entry |= {"prev": audit.GENESIS_PREV, "time": "2025-01-01T00:00:00.000000Z"}
    old_entry["hash"] = hashlib.sha256(audit.canonical_json(old_entry)).hexdigest()
    path.write_bytes(audit.canonical_json(old_entry) + b"\n")

    with pytest.raises(ConfigurationError, match="registry audit rotate"):
        TestClient(create_app(settings, client=memory.client)).__enter__()
    assert main(["audit", "verify", str(path)]) == 1
    assert "--unkeyed" in capsys.readouterr().err
    assert main(["audit", "verify", str(path), "--unkeyed"]) == 0
    assert "UNKEYED" in capsys.readouterr().out

    assert main(["--json", "audit", "rotate", str(path)]) == 0
    sealed = json.loads(capsys.readouterr().out)["sealed"]
    assert (sealed["entries"], sealed["sealed_key_id"]) == (1, None)
    with TestClient(create_app(settings, client=memory.client)) as http:
        assert http.get("/models").status_code == 200
        http.post("/verify", content=b"not a checkpoint")
    assert main(["--json", "audit", "verify", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["entries"] == 2 and report["sealed"]["found"] and report["sealed"]["intact"]
    (path.parent / sealed["sealed_file"]).write_bytes(b"")  # the old evidence destroyed
    assert main(["audit", "verify", str(path)]) == 1
    assert sealed["sealed_file"] in capsys.readouterr().err


def test_serve_flags_override_the_environment() -> None:
    args = build_parser().parse_args(
        ["serve", "--port", "9123", "--workers", "3", "--host", "0.0.0.0"]
    )
    assert (args.port, args.workers, args.host) == (9123, 3, "0.0.0.0")
    defaults = build_parser().parse_args(["serve"])
    assert (defaults.port, defaults.workers, defaults.host) == (None, None, None)


def test_settings_survive_the_trip_to_worker_processes_secrets_included(tmp_path: Path) -> None:
    settings = Settings(
        rpc_url="http://127.0.0.1:1",
        data_dir=tmp_path,
        private_key="0x" + "11" * 32,
        api_keys="k" * 20 + ":registrar",
        trusted_registrants="0x" + "ab" * 20,
        min_accuracy_bps=9000,
        workers=4,
    )

    again = settings_from_json(settings_to_json(settings))

    assert again == settings
    assert again.private_key is not None
    assert again.private_key.get_secret_value() == "0x" + "11" * 32
    assert (
        again.api_keys is not None and again.api_keys.get_secret_value() == "k" * 20 + ":registrar"
    )


def test_a_worker_builds_its_app_from_the_settings_it_was_handed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(rpc_url="memory", data_dir=tmp_path, max_upload_bytes=12345)
    monkeypatch.setenv(SETTINGS_ENV, settings_to_json(settings))
    app: Any = worker_app()
    limit = next(m for m in app.user_middleware if m.cls.__name__ == "BodyLimitMiddleware")
    assert limit.kwargs["max_bytes"] == 12345


def test_serving_the_memory_chain_with_several_workers_is_refused(tmp_path: Path) -> None:
    from registry.api.server import run

    with pytest.raises(ConfigurationError, match="memory"):
        run(Settings(rpc_url="memory", data_dir=tmp_path, workers=2))


def test_when_the_audit_log_cannot_be_flushed_nothing_is_verified_or_predicted(
    make_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = make_api(audit_sync_interval_s=0)
    checkpoint, digest = api.registered_model()
    assert api.verify(checkpoint).json()["verified"] is True

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("registry.core.audit.os.fsync", failing_fsync)
    for response in (api.verify(checkpoint), api.predict_png(digest)):
        error = assert_error(response, 503, "audit_log_unavailable")
        assert "Input/output error" in error["message"]
        assert "predictions" not in response.json()
    monkeypatch.undo()  # the disk is back; the log still refuses until it is looked at
    assert_error(api.predict_png(digest), 503, "audit_log_unavailable")
    assert audit.verify(api.settings.data_dir / "audit.log", service_key(api)).entries >= 3
