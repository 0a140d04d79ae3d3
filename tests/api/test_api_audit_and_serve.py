"""The audit trail the service writes, `registry audit verify`, and `registry serve`'s settings."""

from __future__ import annotations

import errno
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
from registry.errors import AuditLogCorrupt, ConfigurationError


def test_register_revoke_verify_and_predict_each_leave_one_audit_entry(api: Api) -> None:
    checkpoint, digest = api.registered_model()
    api.verify(checkpoint)
    api.predict_png(digest, png(), png(), png())
    api.revoke(digest, "regulatory")
    time.sleep(api.settings.validity_ttl_s + 0.05)
    api.http.post(f"/models/{digest}/predict", files=[("images", ("x.png", png()))], headers=READER)

    entries = api.audit_entries()

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
    assert audit.verify(api.settings.data_dir / "audit.log") == 5


def test_audit_verify_names_the_line_that_was_edited(api: Api) -> None:
    checkpoint, _ = api.registered_model()
    api.verify(checkpoint)
    api.verify(checkpoint)
    path = api.settings.data_dir / "audit.log"
    lines = path.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["outcome"] = "unknown"  # someone rewrites history: "it was never verified"
    lines[1] = json.dumps(edited, sort_keys=True, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(AuditLogCorrupt) as caught:
        audit.verify(path)

    assert caught.value.line == 2


def test_the_audit_verify_command_checks_a_log_and_fails_on_a_broken_one(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint, _ = api.registered_model()
    api.verify(checkpoint)
    path = api.settings.data_dir / "audit.log"

    assert main(["--json", "audit", "verify", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "file": str(path),
        "entries": 2,
        "intact": True,
    }
    seq, head = audit.AuditLog(path).head()
    anchored = ["audit", "verify", str(path), "--anchor", f"{seq}:{head}"]
    assert main(anchored) == 0

    path.write_text(path.read_text().splitlines()[0] + "\n")  # the last line cut off
    capsys.readouterr()
    assert main(anchored) == 1
    assert "fails verification" in capsys.readouterr().err


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
    assert audit.verify(api.settings.data_dir / "audit.log") >= 2
