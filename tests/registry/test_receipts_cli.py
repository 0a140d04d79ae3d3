"""``registry receipt verify`` on a second machine, and ``registry audit verify --chain``.

The service runs on a real anvil node and writes its audit log in its own data directory. The
auditor has another data directory, no access to that log, and only what it was handed: the
``/predict`` answer (with its receipt), the proof fetched over HTTP from ``GET /audit/proof``,
and the chain, reached through a JSON-RPC proxy that counts the calls.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apikit import make_card, make_checkpoint, png, settings_for
from fastapi.testclient import TestClient

from registry.api import create_app
from registry.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from registry.core.audit_chain import make_line, parse_line, sha256_hex
from registry.core.audit_key import load_key
from registry.core.digest import digest_bytes

pytestmark = pytest.mark.anvil

OTHER_SERVICE = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"


class CountingProxy:
    """A JSON-RPC proxy in front of a node: forwards every POST, counts the calls in it."""

    def __init__(self, upstream: str) -> None:
        self.calls: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                payload = json.loads(body)
                batch = payload if isinstance(payload, list) else [payload]
                proxy.calls.extend(call["method"] for call in batch)
                request = urllib.request.Request(
                    upstream, data=body, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=10) as answer:
                    reply = answer.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Handed:
    """What the auditor was handed, and the service's facts it pins from elsewhere."""

    receipt: Path
    proof: Path
    service: str
    contract: str
    auditor_dir: Path
    service_dir: Path
    answer: dict[str, Any]
    proof_body: dict[str, Any]


@pytest.fixture
def proxy(anvil: Any) -> Iterator[CountingProxy]:
    counting = CountingProxy(anvil.endpoint)
    yield counting
    counting.close()


@pytest.fixture
def handed(anvil: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Handed:
    for name in ("REGISTRY_RPC_URL", "REGISTRY_CONTRACT_ADDRESS", "REGISTRY_CHAIN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("REGISTRY_PRIVATE_KEY", raising=False)
    service_dir, auditor_dir = tmp_path / "service", tmp_path / "auditor"
    auditor_dir.mkdir()
    settings = settings_for(
        service_dir, rpc_url=anvil.endpoint, contract_address=anvil.client.address
    )
    checkpoint = make_checkpoint(5)
    digest = str(digest_bytes(checkpoint))
    with TestClient(create_app(settings, client=anvil.client)) as http:
        files = {
            "checkpoint": ("m.safetensors", checkpoint, "application/octet-stream"),
            "card": ("card.json", make_card(checkpoint), "application/json"),
        }
        registered = http.post("/models", files=files, headers={"X-API-Key": _registrar()})
        assert registered.status_code == 201, registered.text
        answers = [
            http.post(
                f"/models/{digest}/predict", files=[("images", ("x.png", png(), "image/png"))]
            )
            for _ in range(3)
        ]
        assert all(a.status_code == 200 for a in answers), answers[0].text
        anchor = http.app.state.anchoring.anchor_once()  # type: ignore[attr-defined]
        assert anchor is not None
        answer = answers[1].json()
        proof = http.get(f"/audit/proof/{answer['receipt']['log_index']}")
        assert proof.status_code == 200, proof.text
        # One more answer after the anchor: the shutdown's anchor covers it.
        http.post(f"/models/{digest}/predict", files=[("images", ("x.png", png(), "image/png"))])
    receipt_file, proof_file = auditor_dir / "answer.json", auditor_dir / "proof.json"
    receipt_file.write_text(json.dumps(answer))
    proof_file.write_text(proof.text)
    return Handed(
        receipt_file,
        proof_file,
        answer["receipt"]["service"],
        anvil.client.address,
        auditor_dir,
        service_dir,
        answer,
        proof.json(),
    )


def _registrar() -> str:
    from apikit import REGISTRAR_KEY

    return REGISTRAR_KEY


def verify(
    capsys: pytest.CaptureFixture[str], handed: Handed, rpc_url: str, *extra: str
) -> tuple[int, dict[str, Any], str]:
    argv = [
        "--json",
        "receipt",
        "verify",
        str(handed.receipt),
        "--proof",
        str(handed.proof),
        "--service",
        handed.service,
        "--rpc-url",
        rpc_url,
        "--contract",
        handed.contract,
        "--data-dir",
        str(handed.auditor_dir),
        *extra,
    ]
    code = main(argv)
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out else {}, captured.err


def test_a_receipt_verifies_on_another_machine_with_two_rpc_calls(
    handed: Handed, proxy: CountingProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    code, body, err = verify(capsys, handed, proxy.url)

    assert code == EXIT_OK, err
    assert body["verified"] is True and body["reason"] == "verified"
    assert proxy.calls == ["eth_chainId", "eth_call"]
    assert len(handed.proof_body["proof"]) <= (handed.proof_body["size"] - 1).bit_length()
    assert not any(handed.auditor_dir.glob("audit*"))  # the auditor never had the log


def test_a_forged_proof_is_not_verified(
    handed: Handed, proxy: CountingProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    body = dict(handed.proof_body)
    first = body["proof"][0]
    body["proof"] = [("0" if first[0] != "0" else "1") + first[1:], *body["proof"][1:]]
    handed.proof.write_text(json.dumps(body))

    code, answer, err = verify(capsys, handed, proxy.url)

    assert code == EXIT_FAILED
    assert answer["reason"] == "proof_invalid"
    assert "forged" in err or "forged" in answer["message"]


def test_a_truncated_proof_is_not_verified(
    handed: Handed, proxy: CountingProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    body = dict(handed.proof_body)
    assert len(body["proof"]) >= 2
    body["proof"] = body["proof"][:-1]
    handed.proof.write_text(json.dumps(body))

    code, answer, _ = verify(capsys, handed, proxy.url)

    assert (code, answer["reason"]) == (EXIT_FAILED, "proof_invalid")


def test_a_receipt_for_another_model_is_not_verified_and_asks_no_node(
    handed: Handed, proxy: CountingProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    other = str(digest_bytes(b"another model"))

    code, answer, _ = verify(capsys, handed, proxy.url, "--model", other)

    assert (code, answer["reason"]) == (EXIT_FAILED, "other_model")
    assert proxy.calls == []


def test_an_anchor_by_a_key_that_is_not_the_services_is_not_verified(
    handed: Handed, proxy: CountingProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    # The receipt is edited to name another service, and the verifier pins that one: it has
    # anchored nothing, so the receipt's claim is refused, never followed to another root.
    answer = dict(handed.answer)
    answer["receipt"] = {**answer["receipt"], "service": OTHER_SERVICE}
    handed.receipt.write_text(json.dumps(answer))
    handed.service = OTHER_SERVICE

    code, body, _ = verify(capsys, handed, proxy.url)

    assert (code, body["reason"]) == (EXIT_FAILED, "not_anchored")


def test_a_receipt_naming_another_service_than_the_pinned_one_is_not_verified(
    handed: Handed, proxy: CountingProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    pinned = handed.service
    handed.service = OTHER_SERVICE

    code, body, _ = verify(capsys, handed, proxy.url)

    assert (code, body["reason"]) == (EXIT_FAILED, "other_service")
    assert pinned != OTHER_SERVICE


@pytest.mark.parametrize(
    "content",
    [b"not json", b'{"log_index": 1}', b'{"log_index": 1, "log_index": 2}'],
)
def test_a_proof_file_that_is_not_a_proof_is_unusable_input(
    handed: Handed, proxy: CountingProxy, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    handed.proof.write_bytes(content)

    code, _, err = verify(capsys, handed, proxy.url)

    assert code == EXIT_USAGE
    assert err.startswith("error: ")
    assert proxy.calls == []


def test_audit_verify_chain_checks_every_anchor_against_the_local_log(
    handed: Handed, anvil: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    log = handed.service_dir / "audit.log"
    argv = [
        "--json",
        "audit",
        "verify",
        str(log),
        "--chain",
        "--service",
        handed.service,
        "--rpc-url",
        anvil.endpoint,
        "--contract",
        handed.contract,
        "--data-dir",
        str(handed.service_dir),
    ]

    code = main(argv)
    intact = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK
    assert intact["chain"]["intact"] is True and len(intact["chain"]["anchors"]) == 2
    assert intact["chain"]["anchors"][1]["consistent_with_previous"] is True

    # An insider with the audit key rewrites an anchored entry and recomputes the whole chain.
    key = load_key(handed.service_dir / "audit.key")
    lines = log.read_bytes().splitlines()
    out, prev = [], "0" * 64
    for number, raw in enumerate(lines, start=1):
        entry = parse_line(raw)
        body = {k: v for k, v in entry.items() if k not in {"seq", "time", "event", "prev", "hash"}}
        if number == 3:
            body["who"] = "ip:somebody-else"
        _, line = make_line(entry["event"], body, number, prev, key)
        out.append(line[:-1])
        prev = sha256_hex(line[:-1])
    log.write_bytes(b"\n".join(out) + b"\n")

    code = main(argv)
    rewritten = json.loads(capsys.readouterr().out)
    assert code == EXIT_FAILED
    assert rewritten["intact"] is True  # the keyed chain alone still holds
    assert rewritten["chain"]["intact"] is False
    assert "rewritten" in rewritten["chain"]["anchors"][-1]["problem"]


def test_audit_verify_chain_needs_the_pinned_service(
    handed: Handed, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["audit", "verify", str(handed.service_dir / "audit.log"), "--chain"])
    assert code == EXIT_USAGE
    assert "--service" in capsys.readouterr().err
