#!/usr/bin/env python3
"""The whole story on the embedded defaults, with real parts and no network:

train a LeNet-5 on the built-in stand-in dataset → register it through the clinic service on a
local anvil chain → verify it over HTTP → predict through the gate → change one byte (refused) →
revoke it (refused within the validity bound).

Everything lives under ``.data/demo`` (wiped at the start, so the demo can run again) and every
process it starts is stopped at the end. The keys are anvil's public development keys: fine for a
local chain, never for a real network. Exit status 0 only if every step behaved as a clinic needs.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REGISTRAR_KEY = "demo-registrar-key-not-secret-0001"
REVOKER_KEY = "demo-revoker-key-not-secret-0002"


def step(number: int, text: str) -> None:
    print(f"\n[{number}/9] {text}", flush=True)


def say(text: str) -> None:
    print(f"      {text}", flush=True)


def fail(text: str) -> None:
    raise SystemExit(f"demo failed: {text}")


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="training epochs (default: the shipped default)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".data" / "demo")
    args = parser.parse_args()

    from registry.chain.connection import make_web3
    from registry.chain.deploy import deploy_contract
    from registry.chain.deployments import save_deployment
    from registry.chain.keys import account_from_hex
    from registry.core.records import Role
    from registry.devnet import DEV_PRIVATE_KEYS, AnvilNode, ServiceProcess, start_service
    from training.cli import add_train_arguments, run_train
    from training.data import load_builtin

    data_dir: Path = args.data_dir
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)

    step(1, "local chain")
    node = AnvilNode(data_dir / "chain").start()
    server: ServiceProcess | None = None
    try:
        say(f"anvil at {node.url}, state in {node.state_path}")

        step(2, "deploy the registry (admin + registrar: dev key 0, revoker: dev key 1)")
        admin = account_from_hex(DEV_PRIVATE_KEYS[0], "anvil dev key 0")
        revoker = account_from_hex(DEV_PRIVATE_KEYS[1], "anvil dev key 1")
        client, deployment = deploy_contract(make_web3(node.url, 10.0), admin, endpoint=node.url)
        client.grant_role(Role.REGISTRAR, admin.address)
        client.grant_role(Role.REVOKER, revoker.address)
        save_deployment(data_dir / "service", deployment)
        say(
            f"ModelRegistry at {deployment.address} on chain {deployment.chain_id}, "
            f"block {deployment.block_number}"
        )

        step(3, "train LeNet-5 on the built-in dataset")
        train_parser = argparse.ArgumentParser()
        add_train_arguments(train_parser)
        train_argv = ["--out", str(data_dir / "model"), "--quiet"]
        if args.epochs:
            train_argv += ["--epochs", str(args.epochs)]
        result = run_train(train_parser.parse_args(train_argv))
        say(f"dataset: {result.dataset_name}")
        say(
            f"test accuracy {result.accuracy_bps / 100:.2f} % ({result.accuracy_bps} bps) on test "
            f"set sha256:{result.test_set_digest[:16]}…"
        )
        say(f"checkpoint sha256:{result.checkpoint_sha256}")

        step(4, "start the clinic service (two workers, each with its own inference gate)")
        env = {
            "REGISTRY_RPC_URL": node.url,
            "REGISTRY_DATA_DIR": str(data_dir / "service"),
            "REGISTRY_PRIVATE_KEY": DEV_PRIVATE_KEYS[0],
            "REGISTRY_API_KEYS": f"{REGISTRAR_KEY}:registrar,{REVOKER_KEY}:revoker",
        }
        server = start_service(env, workers=2, log_path=data_dir / "service.log")
        base = server.url
        say(f"service at {base} (web page: {base}/, API: {base}/openapi.json)")
        http = httpx.Client(base_url=base, timeout=30)

        step(5, "register checkpoint + model card through the API (registrar key)")
        checkpoint = result.checkpoint_path.read_bytes()
        card = result.card_path.read_bytes()
        response = http.post(
            "/models",
            files={
                "checkpoint": ("model.safetensors", checkpoint, "application/octet-stream"),
                "card": ("model_card.json", card, "application/json"),
            },
            headers={"X-API-Key": REGISTRAR_KEY},
        )
        if response.status_code not in (200, 201):
            fail(f"registration answered {response.status_code}: {response.text}")
        registered = response.json()
        digest = registered["record"]["digest"]
        say(
            f"registered {digest} in block {registered['block_number']} "
            f"(tx {registered['tx_hash']}, {registered['gas_used']} gas)"
        )

        step(6, "verify the checkpoint file over HTTP")
        verdict = http.post("/verify", files={"file": ("model.safetensors", checkpoint)}).json()
        if not verdict["verified"]:
            fail(f"a registered checkpoint was not verified: {verdict}")
        say(f"VERIFIED: {verdict['detail']}")

        step(7, "predict through the gate")
        test = load_builtin().test
        count = 16
        images = test.images[:count].numpy()
        labels = test.labels[:count].tolist()
        files = [
            ("images", (f"case{i}.png", png_bytes(images[i, 0]), "image/png")) for i in range(count)
        ]
        answer = http.post(f"/models/{digest}/predict", files=files)
        if answer.status_code != 200:
            fail(f"prediction answered {answer.status_code}: {answer.text}")
        body = answer.json()
        predicted = [p["class_index"] for p in body["predictions"]]
        correct = sum(int(p == y) for p, y in zip(predicted, labels, strict=True))
        provenance = body["provenance"]
        say(f"{correct}/{count} test images classified correctly")
        say(
            f"provenance: model {provenance['model_digest'][:23]}…, chain {provenance['chain_id']}, "
            f"registered in block {provenance['registration_block']}, validity confirmed at "
            f"block {provenance['validity_confirmed_at_block']}, accuracy "
            f"{provenance['accuracy_bps'] / 100:.2f} %"
        )
        if correct < count * 0.75:
            fail("the verified model answered worse than its registered accuracy suggests")

        step(8, "change one byte of the checkpoint")
        tampered = bytearray(checkpoint)
        tampered[-1] ^= 0x01
        verdict = http.post(
            "/verify", files={"file": ("model.safetensors", bytes(tampered))}
        ).json()
        if verdict["verified"]:
            fail("a tampered checkpoint was verified")
        say(f"NOT VERIFIED [{verdict['reason']}]: {verdict['detail']}")

        step(9, "revoke the model (revoker key) and try to use it")
        revoked = http.post(
            f"/models/{digest}/revoke",
            json={"reason": "safety-issue"},
            headers={"X-API-Key": REVOKER_KEY},
        )
        if revoked.status_code != 200:
            fail(f"revocation answered {revoked.status_code}: {revoked.text}")
        # Two workers, each with its own gate: wait until several answers in a row are refusals.
        started = time.monotonic()
        streak, streak_started, attempt = 0, started, None
        while streak < 6:
            if time.monotonic() - started > 5:
                fail("predictions were still served 5 s after the revocation")
            attempt = http.post(f"/models/{digest}/predict", files=files[:1])
            if attempt.status_code == 200:
                streak = 0
            elif attempt.status_code == 403:
                streak_started = time.monotonic() if streak == 0 else streak_started
                streak += 1
            else:
                fail(f"after revocation predict answered {attempt.status_code}: {attempt.text}")
        assert attempt is not None
        say(
            f"every prediction refused from {streak_started - started:.2f} s after the "
            f"revocation landed (403 {attempt.json()['error']['code']})"
        )
        verdict = http.post("/verify", files={"file": ("model.safetensors", checkpoint)}).json()
        say(f"NOT VERIFIED [{verdict['reason']}]: {verdict['detail']}")
        say(
            f"audit trail: {data_dir / 'service' / 'audit.log'} "
            "(check it with `registry audit verify FILE`)"
        )
        print("\ndemo finished: every step behaved as expected")
        return 0
    finally:
        if server is not None:
            server.stop()
        node.stop()


if __name__ == "__main__":
    sys.exit(main())
