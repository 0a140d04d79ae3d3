#!/usr/bin/env python3
"""Clinic service benchmarks against real servers on loopback, each a ratio to a baseline server
measured in the same run (same machine, same load generator, one uvicorn worker each):

1. ``POST /models/{digest}/predict`` vs a bare FastAPI endpoint doing the same inference (same PNG
   decoding, same network, same probabilities) with no gate, no chain, no audit;
2. ``POST /verify`` of a stored-size checkpoint vs a bare upload-and-hash endpoint, with the
   default audit durability (entries written before the response, fsynced within
   ``REGISTRY_AUDIT_SYNC_INTERVAL_S``) and then with every entry fsynced before its response;
3. revocation-to-refusal: a model is revoked on chain behind the service's back (so no worker
   hears of it directly) and predictions are polled until refused; p50/p99 over the samples,
   against a service with two workers.

    python scripts/bench_api.py [--seconds 8] [--clients 8] [--revocations 20]

Bounded: every load phase runs for ``--seconds`` with ``--clients`` threads, loopback only, and
every process started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

BASELINE_APP = """
import hashlib, os
import torch
from fastapi import FastAPI, Request, UploadFile
from registry.api.images import decode_image
from training.checkpoint import load_checkpoint_bytes
from training.model import predict_proba
import numpy as np

app = FastAPI()
network, spec = load_checkpoint_bytes(open(os.environ["BENCH_CHECKPOINT"], "rb").read())

@app.post("/predict")
def predict(images: list[UploadFile]):
    pixels = np.stack([
        decode_image(f.file.read(), in_channels=spec.in_channels, size=spec.input_size,
                     max_bytes=4 << 20, max_pixels=1 << 24)
        for f in images
    ])
    probabilities = predict_proba(network, torch.from_numpy(pixels), spec)
    return {"predictions": [{"class_index": int(row.argmax()), "probabilities": row.tolist()}
                            for row in probabilities]}

@app.post("/upload-hash")
async def upload_hash(request: Request):
    h = hashlib.sha256()
    async for chunk in request.stream():
        h.update(chunk)
    return {"digest": "sha256:" + h.hexdigest()}
"""


def load(seconds: float, clients: int, send: Callable[[httpx.Client], httpx.Response]) -> float:
    """Requests per second over ``seconds`` from ``clients`` threads; any non-200 aborts."""
    done = [0] * clients
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < deadline and not errors:
                response = send(http)
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:300]}")
                    return
                done[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"load phase failed: {errors[0]}")
    return sum(done) / (time.monotonic() - started)


def compare(
    name: str, seconds: float, clients: int, baseline: Callable, ours: Callable, target: str
) -> None:
    load(1.0, clients, baseline)  # warm both: first requests load models and caches
    load(1.0, clients, ours)
    base_rates, our_rates = [], []
    for _ in range(2):  # interleaved so drift on a noisy machine hits both alike
        base_rates.append(load(seconds, clients, baseline))
        our_rates.append(load(seconds, clients, ours))
    b, o = statistics.median(base_rates), statistics.median(our_rates)
    print(
        f"{name}\n   baseline {b:8.1f} req/s   registry {o:8.1f} req/s -> {o / b:.2f}x ({target})\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per load phase (default 8)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--images", type=int, default=4, help="images per predict (default 4)")
    parser.add_argument("--revocations", type=int, default=20, help="samples (default 20)")
    args = parser.parse_args()

    from PIL import Image

    from modelformat.spec import ModelSpec
    from registry.chain.connection import make_web3
    from registry.chain.deploy import deploy_and_grant_self
    from registry.chain.keys import account_from_hex
    from registry.core.digest import Digest
    from registry.core.records import RevocationReason
    from registry.devnet import (
        DEV_PRIVATE_KEYS,
        AnvilNode,
        ServiceProcess,
        free_port,
        start_service,
    )
    from training.card import canonical_json
    from training.checkpoint import checkpoint_bytes
    from training.model import build_model

    key = "bench-registrar-and-revoker-key-000"
    root = Path(tempfile.mkdtemp(prefix="bench-api-"))
    node = AnvilNode(root / "chain").start()
    processes: list[ServiceProcess] = []
    try:
        account = account_from_hex(DEV_PRIVATE_KEYS[0], "anvil dev key 0")
        client, deployment = deploy_and_grant_self(
            make_web3(node.url, 10), account, endpoint=node.url
        )
        spec = ModelSpec(
            in_channels=1,
            input_size=28,
            num_classes=10,
            class_names=tuple(str(i) for i in range(10)),
            mean=(0.3,),
            std=(0.3,),
            dataset="benchmark",
        )

        def checkpoint(seed: int) -> bytes:
            import torch

            torch.manual_seed(seed)
            return checkpoint_bytes(build_model(spec), spec)

        def card(data: bytes) -> bytes:
            from training.card import CARD_SCHEMA, CARD_SCHEMA_VERSION

            return canonical_json(
                {
                    "schema": CARD_SCHEMA,
                    "schema_version": CARD_SCHEMA_VERSION,
                    "model_name": "bench",
                    "checkpoint": {"sha256": hashlib.sha256(data).hexdigest()},
                    "evaluation": {"accuracy_bps": 9000, "test_set_sha256": "ab" * 32},
                    "parent_digest": None,
                }
            )

        model = checkpoint(0)
        (root / "model.safetensors").write_bytes(model)
        buffer = io.BytesIO()
        Image.new("L", (28, 28), 128).save(buffer, format="PNG")
        image = buffer.getvalue()

        env = {
            "REGISTRY_RPC_URL": node.url,
            "REGISTRY_CONTRACT_ADDRESS": deployment.address,
            "REGISTRY_PRIVATE_KEY": DEV_PRIVATE_KEYS[0],
            "REGISTRY_API_KEYS": f"{key}:registrar+revoker",
        }

        def serve_registry(name: str, workers: int = 1, **settings: str) -> str:
            """Start `registry serve` with ``settings`` (REGISTRY_* names); its URL. It is
            ``processes[0]`` from then on, so each phase stops the one before."""
            settings = {"REGISTRY_DATA_DIR": str(root / "data1"), **settings}
            service = start_service(
                {**env, **settings}, workers=workers, log_path=root / f"{name}.log"
            )
            processes.insert(0, service)
            return service.url

        ours = serve_registry("ours")
        (root / "baseline_app.py").write_text(BASELINE_APP)
        base_port = free_port()
        baseline = start_service(
            {**env, "BENCH_CHECKPOINT": str(root / "model.safetensors")},
            command=[
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(root),
                "baseline_app:app",
                "--port",
                str(base_port),
                "--log-level",
                "warning",
            ],
            port=base_port,
            health_path="/openapi.json",
            log_path=root / "base.log",
        )
        processes.append(baseline)
        base = baseline.url

        registered = httpx.post(
            f"{ours}/models",
            headers={"X-API-Key": key},
            timeout=60,
            files={"checkpoint": ("m.safetensors", model), "card": ("card.json", card(model))},
        )
        if registered.status_code not in (200, 201):
            raise SystemExit(f"registration failed: {registered.text}")
        digest = registered.json()["record"]["digest"]
        files = [("images", (f"{i}.png", image, "image/png")) for i in range(args.images)]

        def verify_model(url: str) -> Callable[[httpx.Client], httpx.Response]:
            """One ``POST /verify`` of the stored checkpoint to the registry at ``url``."""
            return lambda h: h.post(
                f"{url}/verify", content=model, headers={"Content-Type": "application/octet-stream"}
            )

        print(
            f"model {len(model):,} bytes, {args.images} images per predict, {args.clients} "
            f"clients, {args.seconds:.0f} s per phase x 2 rounds\n"
        )

        compare(
            "1. POST /predict",
            args.seconds,
            args.clients,
            lambda h: h.post(f"{base}/predict", files=files),
            lambda h: h.post(f"{ours}/models/{digest}/predict", files=files),
            "target >= 0.9x",
        )
        compare(
            "2. POST /verify of the stored checkpoint",
            args.seconds,
            args.clients,
            lambda h: h.post(f"{base}/upload-hash", content=model),
            verify_model(ours),
            "target >= 0.5x",
        )

        # 2b. The same with every audit entry fsynced before its response (not the default).
        processes.pop(0).stop()
        strict = serve_registry("strict", REGISTRY_AUDIT_SYNC_INTERVAL_S="0")
        compare(
            "2b. POST /verify, every audit entry fsynced before its response "
            "(REGISTRY_AUDIT_SYNC_INTERVAL_S=0)",
            args.seconds,
            args.clients,
            lambda h: h.post(f"{base}/upload-hash", content=model),
            verify_model(strict),
            "no target: the default flushes within 0.05 s",
        )

        # 3. Revocation to refusal, with two workers that learn of it only from the chain.
        processes.pop(0).stop()
        two = serve_registry("two", workers=2, REGISTRY_DATA_DIR=str(root / "data2"))
        delays = []
        with httpx.Client(base_url=two, timeout=30) as http:
            for n in range(args.revocations):
                data = checkpoint(1000 + n)
                response = http.post(
                    "/models",
                    headers={"X-API-Key": key},
                    files={
                        "checkpoint": ("m.safetensors", data),
                        "card": ("card.json", card(data)),
                    },
                )
                assert response.status_code == 201, response.text
                target = response.json()["record"]["digest"]
                for _ in range(6):  # both workers load and cache it
                    assert (
                        http.post(f"/models/{target}/predict", files=files[:1]).status_code == 200
                    )
                client.revoke(Digest.parse(target), RevocationReason.SAFETY_ISSUE)
                landed = time.monotonic()  # the receipt is in: the revocation is on chain
                streak, refused = 0, landed
                while streak < 4:  # refused by whichever worker answers, several times running
                    status = http.post(f"/models/{target}/predict", files=files[:1]).status_code
                    if status == 403:
                        streak += 1
                        if streak == 1:
                            refused = time.monotonic()
                    elif status == 200:
                        streak = 0
                    else:
                        raise SystemExit(f"unexpected status {status} after revocation")
                    if time.monotonic() - landed > 10:
                        raise SystemExit("a revoked model was still served after 10 s")
                delays.append(refused - landed)
        delays.sort()
        p99 = delays[min(len(delays) - 1, round(0.99 * (len(delays) - 1)))]
        print(
            f"3. revocation to refusal, 2 workers, {len(delays)} revocations\n"
            f"   p50 {statistics.median(delays):.2f} s   p99 {p99:.2f} s   max {delays[-1]:.2f} s"
            f" (target p99 <= 2 s)\n"
        )
        return 0
    finally:
        for process in processes:
            process.stop()
        node.stop()


if __name__ == "__main__":
    sys.exit(main())
