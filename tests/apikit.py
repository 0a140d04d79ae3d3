"""Helpers for the HTTP service tests: real LeNet checkpoints, model cards, images, an app driver.

Checkpoints are tiny untrained LeNet-5s written by ``training.checkpoint``; their model cards are the
JSON a registrar uploads with them.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from registry.chain.client import RegistryClient
from registry.config import Settings
from training.card import CARD_SCHEMA, CARD_SCHEMA_VERSION, canonical_json

REGISTRAR_KEY = "registrar-key-0123456789abcdef"
REVOKER_KEY = "revoker-key-0123456789abcdef"
READER_KEY = "reader-key-0123456789abcdef"
API_KEYS = f"{REGISTRAR_KEY}:registrar,{REVOKER_KEY}:revoker,{READER_KEY}:reader"
REGISTRAR = {"X-API-Key": REGISTRAR_KEY}
REVOKER = {"X-API-Key": REVOKER_KEY}
READER = {"X-API-Key": READER_KEY}

TEST_SET_DIGEST = "sha256:" + hashlib.sha256(b"the held-out test split").hexdigest()
CLASS_NAMES = ("benign", "malignant")


def make_checkpoint(seed: int = 0, *, in_channels: int = 1, input_size: int = 28) -> bytes:
    """A freshly initialised LeNet-5 (seeded, so bytes are reproducible) as safetensors bytes."""
    import torch

    from modelformat.spec import ModelSpec
    from training.checkpoint import checkpoint_bytes
    from training.model import build_model

    spec = ModelSpec(
        in_channels=in_channels,
        input_size=input_size,
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
        mean=(0.5,) * in_channels,
        std=(0.25,) * in_channels,
        dataset="synthetic-test",
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(spec)
    return checkpoint_bytes(model, spec)


def make_card(
    checkpoint: bytes,
    *,
    accuracy_bps: int = 9_250,
    test_set_digest: str = TEST_SET_DIGEST,
    parent: str | None = None,
) -> bytes:
    """A model card laid out as ``training.card.build_card`` does, in its canonical bytes."""
    return canonical_json(card_dict(checkpoint, accuracy_bps, test_set_digest, parent))


def card_dict(
    checkpoint: bytes,
    accuracy_bps: int = 9_250,
    test_set_digest: str = TEST_SET_DIGEST,
    parent: str | None = None,
) -> dict[str, Any]:
    test_hex = test_set_digest.removeprefix("sha256:")
    return {
        "schema": CARD_SCHEMA,
        "schema_version": CARD_SCHEMA_VERSION,
        "model_name": "lenet5-synthetic-test",
        "checkpoint": {
            "format": "safetensors",
            "file_name": "model.safetensors",
            "sha256": hashlib.sha256(checkpoint).hexdigest(),
        },
        "parent_digest": parent.removeprefix("sha256:") if parent else None,
        "dataset": {
            "name": "synthetic-test",
            "splits": {"test": {"size": 100, "sha256": test_hex}},
        },
        "evaluation": {"split": "test", "test_set_sha256": test_hex, "accuracy_bps": accuracy_bps},
        "intended_use": "tests only",
    }


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def png(size: int = 28, *, mode: str = "L", fill: int = 128) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (size, size), fill if mode == "L" else (fill,) * 3).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg(size: int = 28) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (size, size), 90).save(buffer, "JPEG")
    return buffer.getvalue()


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response has ``status`` and the one error shape (and ``code``, when given)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    assert "Traceback" not in response.text
    if code is not None:
        assert error["code"] == code, error
    return error


@dataclass
class Api:
    """A running app and what the tests need to drive it."""

    http: TestClient
    chain: Any  # tests/conftest.py's Backend
    settings: Settings
    registered: dict[str, bytes] = field(default_factory=dict)

    @property
    def client(self) -> RegistryClient:
        return self.chain.client

    def register(
        self, checkpoint: bytes, card: bytes | None = None, *, parent: str | None = None
    ) -> Any:
        files = {
            "checkpoint": ("model.safetensors", checkpoint, "application/octet-stream"),
            "card": ("model_card.json", card or make_card(checkpoint), "application/json"),
        }
        data = {"parent": parent} if parent else None
        return self.http.post("/models", files=files, data=data, headers=REGISTRAR)

    def registered_model(self, seed: int = 0, **card: Any) -> tuple[bytes, str]:
        checkpoint = make_checkpoint(seed)
        response = self.register(checkpoint, make_card(checkpoint, **card))
        assert response.status_code == 201, response.text
        return checkpoint, digest_of(checkpoint)

    def revoke(self, digest: str, reason: str = "safety-issue", **extra: Any) -> Any:
        return self.http.post(
            f"/models/{digest}/revoke", json={"reason": reason, **extra}, headers=REVOKER
        )

    def post_json(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
        """POST ``body`` as given, labelled JSON: for bodies that ``json=`` would not write."""
        return self.http.post(
            path, content=body, headers={**(headers or {}), "Content-Type": "application/json"}
        )

    def verify(self, data: bytes) -> Any:
        return self.http.post(
            "/verify", content=data, headers={"Content-Type": "application/octet-stream"}
        )

    def predict_png(self, digest: str, *images: bytes) -> Any:
        files = [("images", (f"i{n}.png", image, "image/png")) for n, image in enumerate(images)]
        return self.http.post(
            f"/models/{digest}/predict", files=files or [("images", ("x.png", png(), "image/png"))]
        )

    def audit_entries(self) -> list[dict[str, Any]]:
        path = self.settings.data_dir / "audit.log"
        return [json.loads(line) for line in path.read_text().splitlines()]


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "rpc_url": "memory",
        "data_dir": data_dir,
        "api_keys": API_KEYS,
        "validity_ttl_s": 0.2,
        # TestClient sends "Host: testserver"; live servers in tests are reached on loopback.
        "allowed_hosts": ["testserver", "localhost", "127.0.0.1", "::1"],
    }
    values.update(overrides)
    return Settings(**values)


def deploy(url: str) -> tuple[str, str]:
    """Deploy the registry with anvil's first dev key holding every role: (address, key)."""
    from registry.chain.connection import make_web3
    from registry.chain.deploy import deploy_and_grant_self
    from registry.chain.keys import account_from_hex
    from registry.devnet import DEV_PRIVATE_KEYS

    account = account_from_hex(DEV_PRIVATE_KEYS[0], "anvil dev key 0")
    _, deployment = deploy_and_grant_self(make_web3(url, 5.0), account, endpoint=url)
    return deployment.address, DEV_PRIVATE_KEYS[0]
