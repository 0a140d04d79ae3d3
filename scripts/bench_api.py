#!/usr/bin/env python3
"""Clinic service benchmarks against real servers on loopback, each a ratio to a baseline server
measured in the same run (same machine, same load generator, one uvicorn worker each):

1. ``POST /models/{digest}/predict`` vs a bare FastAPI endpoint doing the same inference (same PNG
   decoding, same network, same probabilities) with no gate, no chain, no audit;
   1b. the same ``/predict`` with its receipt vs the same service whose answers carry none
   (``AuditAnchoring.receipt`` replaced by one that gives None, as before receipts), same launcher,
   same data directory;
2. ``POST /verify`` of a stored-size checkpoint vs a bare upload-and-hash endpoint, with the
   default audit durability (entries written before the response, fsynced within
   ``REGISTRY_AUDIT_SYNC_INTERVAL_S``) and then with every entry fsynced before its response;
3. revocation-to-refusal: a model is revoked on chain behind the service's back (so no worker
   hears of it directly) and predictions are polled until refused; p50/p99 over the samples,
   against a service with two workers;
4. hostile images: the server's CPU time per ``/predict`` request (its process's user + system
   time from /proc, before and after a run of the same request) for a corpus of decoder-costly
   shapes, each at the largest size the service's limits let through, against one request with
   one 28x28 PNG; the worst ratio is the line to watch.

    python scripts/bench_api.py [--seconds 8] [--clients 8] [--revocations 20]
    python scripts/bench_api.py --seconds 2 --revocations 3   # quick
    python scripts/bench_api.py --only-hostile [--hostile-pixels 1048576]   # phase 4 alone

Bounded: every load phase runs for ``--seconds`` with ``--clients`` threads, loopback only, and
every process started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import lenet_checkpoint, model_card, request_rate

ROOT = Path(__file__).resolve().parents[1]

# `python -m registry.api.server`, with predict answers as they were before receipts.
NO_RECEIPTS_SERVER = """
from registry.api import anchoring
anchoring.AuditAnchoring.receipt = lambda self, provenance: None
from registry.api.server import run
from registry.config import get_settings
run(get_settings())
"""

BASELINE_APP = """
import hashlib, os
import torch
from fastapi import FastAPI, Request, UploadFile
from registry.api.images import decode_image
from registry.config import Settings
from training.checkpoint import load_checkpoint_bytes
from training.model import predict_proba
import numpy as np

app = FastAPI()
network, spec = load_checkpoint_bytes(open(os.environ["BENCH_CHECKPOINT"], "rb").read())
limits = Settings()

@app.post("/predict")
def predict(images: list[UploadFile]):
    pixels = np.stack([
        decode_image(f.file.read(), in_channels=spec.in_channels, size=spec.input_size,
                     max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels,
                     max_jpeg_scans=limits.max_jpeg_scans)
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
    return request_rate(seconds, clients, send, timeout=30)


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


def server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its descendants, threads included."""
    tick = os.sysconf("SC_CLK_TCK")
    ticks, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # fields 3.. of proc(5): utime is 14, stime 15
        ticks += int(fields[11]) + int(fields[12])
        pending.extend(int(child) for child in children)
    return ticks / tick


def cpu_per_request(pid: int, send: Callable[[], httpx.Response], min_cpu_s: float) -> float:
    """The server's CPU seconds per request of ``send``, over enough requests that /proc's
    10 ms clock tick is noise (at least ``min_cpu_s`` in all, and at least 3 requests)."""
    send()  # warm: the first request of a shape may take paths no later one takes
    before, count = server_cpu_s(pid), 0
    while True:
        response = send()
        if response.status_code != 200:
            raise SystemExit(f"hostile-image phase: {response.status_code}: {response.text[:300]}")
        count += 1
        used = server_cpu_s(pid) - before
        if (count >= 3 and used >= min_cpu_s) or count >= 2000:
            return used / count


def hostile_corpus(settings: Any) -> list[tuple[str, dict[str, Any]]]:
    """(shape, httpx keyword arguments of one POST .../predict): every shape a decoder finds
    costly, each at the largest size ``settings`` let through (all are answered 200)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import imagekit
    import numpy as np

    from registry.api.imageheaders import MAX_IMAGE_SIDE, MAX_PNG_CHUNKS
    from registry.api.images import MIN_IMAGE_CHARGE

    max_bytes, scans = settings.max_image_bytes, settings.max_jpeg_scans
    pixels = min(settings.max_image_pixels, settings.max_request_pixels)
    side = math.isqrt(pixels)

    def files(*images: bytes) -> dict[str, Any]:
        for data in images:
            assert len(data) <= max_bytes, f"a corpus image has {len(data)} bytes"
        return {"files": [("images", (f"{n}", data)) for n, data in enumerate(images)]}

    def best_jpeg(build: Callable[[int], bytes]) -> tuple[bytes, int]:
        """The JPEG ``build(quality)`` at the highest quality that fits the byte limit."""
        for quality in (95, 90, 80, 70, 60, 50, 40, 30, 20, 10):
            data = build(quality)
            if len(data) <= max_bytes:
                return data, quality
        raise SystemExit("no quality brings a corpus JPEG under the byte limit")

    rgb = imagekit.gradient(side, side, 3)
    rgba16 = imagekit.gradient(side, side, 4).astype(np.uint16) * 257
    noise_side = min(math.isqrt(max_bytes) - 64, side)
    noise = np.random.default_rng(0).integers(0, 256, (noise_side, noise_side), dtype=np.uint8)
    count = max(1, settings.max_request_pixels // pixels)
    # As many images as one request may hold: each counts at least MIN_IMAGE_CHARGE pixels.
    most = max(
        1, min(settings.max_images_per_request, settings.max_request_pixels // MIN_IMAGE_CHARGE)
    )
    many = min(16, max(1, most // 4))  # fewer, larger images than the most the request holds
    quarter = math.isqrt(settings.max_request_pixels // many)
    tiny = math.isqrt(settings.max_request_pixels // most)
    long_side = min(MAX_IMAGE_SIDE, pixels)
    short_side = max(1, pixels // long_side)
    gray = imagekit.gradient(side, side)
    stream = zlib.compress(imagekit.scanlines(gray))
    split = imagekit.png(gray, stream=stream, idat_chunk=-(-len(stream) // (MAX_PNG_CHUNKS - 2)))
    jpegs = {
        f"progressive JPEG {side}^2 RGB, {scans} scans (first repeated)": lambda q: (
            imagekit.with_scans(imagekit.jpeg(rgb, progressive=True, quality=q), scans)
        ),
        f"progressive JPEG {side}^2 RGB, {scans} scans (largest repeated)": lambda q: (
            imagekit.with_scans(
                imagekit.jpeg(rgb, progressive=True, quality=q), scans, repeat="largest"
            )
        ),
        f"baseline JPEG {side}^2 RGB": lambda q: imagekit.jpeg(rgb, quality=q),
        f"CMYK JPEG {side}^2": lambda q: imagekit.jpeg(rgb, quality=q, mode="CMYK"),
        f"noise JPEG {noise_side}^2 gray": lambda q: imagekit.jpeg(noise, quality=q),
    }
    corpus = []
    for shape, build in jpegs.items():
        data, quality = best_jpeg(build)
        corpus.append((f"{shape}, quality {quality}", files(*[data] * count)))
    return [
        *corpus,
        (f"PNG {side}^2 RGBA 16-bit", files(imagekit.png(rgba16))),
        (f"PNG {side}^2 RGBA 16-bit, interlaced", files(imagekit.png(rgba16, interlace=True))),
        (f"PNG {side}^2 gray in {MAX_PNG_CHUNKS - 2} IDAT chunks", files(split)),
        (f"noise PNG {noise_side}^2 gray (~max bytes)", files(imagekit.png(noise))),
        (
            f"{many} PNGs {quarter}^2 RGB",
            files(*[imagekit.png(imagekit.gradient(quarter, quarter, 3))] * many),
        ),
        (
            f"{most} PNGs {tiny}^2 RGB",
            files(*[imagekit.png(imagekit.gradient(tiny, tiny, 3))] * most),
        ),
        (
            f"PNG {long_side} x {short_side} RGB (padded)",
            files(imagekit.png(imagekit.gradient(long_side, short_side, 3))),
        ),
        (
            f"PNG {short_side} x {long_side} RGB (padded)",
            files(imagekit.png(imagekit.gradient(short_side, long_side, 3))),
        ),
        (
            "PNG 28^2 with 3 MB of zTXt",
            files(
                imagekit.png(
                    imagekit.gradient(28, 28), before_idat=[imagekit.ztxt_bomb(1_000_000)] * 3
                )
            ),
        ),
        (f"JSON, {most} pixel arrays 28^2", {"json": {"images": [[[7] * 28] * 28] * most}}),
    ]


def hostile_phase(url: str, pid: int, settings: Any, digest: str, image: bytes) -> None:
    """Phase 4: the worst server CPU per request over the hostile corpus, against one normal
    request, in the same run."""
    corpus = hostile_corpus(settings)
    with httpx.Client(base_url=url, timeout=120) as http:
        route = f"/models/{digest}/predict"

        def post(kwargs: dict[str, Any]) -> Callable[[], httpx.Response]:
            return lambda: http.post(route, **kwargs)

        normal_request = post({"files": [("images", ("x.png", image))]})
        cpu_per_request(pid, normal_request, 1.0)  # the service settles (caches, first sync)
        first = cpu_per_request(pid, normal_request, 1.0)
        used_by = [(shape, cpu_per_request(pid, post(kwargs), 0.5)) for shape, kwargs in corpus]
        # The lower of the measurements before and after: the ratios err on the high side.
        normal = min(first, cpu_per_request(pid, normal_request, 1.0))
    print(
        "4. hostile images: server CPU per POST /predict (one worker, /proc user+system), "
        "each shape at the largest size the limits let through\n"
        f"   normal request: one 28x28 PNG {normal * 1000:8.2f} ms"
    )
    worst = max(used_by, key=lambda item: item[1])
    for shape, used in used_by:
        print(f"   {shape:62s} {used * 1000:8.1f} ms  {used / normal:7.1f}x")
    print(
        f"   worst: {worst[0]}: {worst[1] / normal:.1f}x a normal request (goal <= 5x; "
        f"max_request_pixels {settings.max_request_pixels}, max_jpeg_scans "
        f"{settings.max_jpeg_scans})\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per load phase (default 8)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--images", type=int, default=4, help="images per predict (default 4)")
    parser.add_argument("--revocations", type=int, default=20, help="samples (default 20)")
    parser.add_argument(
        "--only-hostile", action="store_true", help="run phase 4 (hostile images) alone"
    )
    parser.add_argument(
        "--hostile-pixels",
        type=int,
        default=None,
        help="phase 4 with REGISTRY_MAX_IMAGE_PIXELS and REGISTRY_MAX_REQUEST_PIXELS set to "
        "this (default: the settings' defaults)",
    )
    args = parser.parse_args()

    from PIL import Image

    from registry.chain.connection import make_web3
    from registry.chain.deploy import deploy_and_grant_self
    from registry.chain.keys import account_from_hex
    from registry.config import Settings
    from registry.core.digest import Digest
    from registry.core.records import RevocationReason
    from registry.devnet import (
        DEV_PRIVATE_KEYS,
        AnvilNode,
        ServiceProcess,
        free_port,
        start_service,
    )

    key = "bench-registrar-and-revoker-key-000"
    root = Path(tempfile.mkdtemp(prefix="bench-api-"))
    node = AnvilNode(root / "chain").start()
    processes: list[ServiceProcess] = []
    try:
        account = account_from_hex(DEV_PRIVATE_KEYS[0], "anvil dev key 0")
        client, deployment = deploy_and_grant_self(
            make_web3(node.url, 10), account, endpoint=node.url
        )

        def checkpoint(seed: int) -> bytes:
            return lenet_checkpoint(seed, "benchmark")

        def card(data: bytes) -> bytes:
            return model_card(data, "bench")

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

        def register(url: str) -> str:
            """Register and store the benchmark's model through the service at ``url``."""
            registered = httpx.post(
                f"{url}/models",
                headers={"X-API-Key": key},
                timeout=60,
                files={"checkpoint": ("m.safetensors", model), "card": ("card.json", card(model))},
            )
            if registered.status_code not in (200, 201):
                raise SystemExit(f"registration failed: {registered.text}")
            digest: str = registered.json()["record"]["digest"]
            return digest

        def serve_hostile() -> tuple[str, int, Settings]:
            """The phase-4 service (one worker, the model of phase 1 in its store), its pid and
            its image limits."""
            pixels = {}
            if args.hostile_pixels is not None:
                pixels = dict.fromkeys(
                    ("REGISTRY_MAX_IMAGE_PIXELS", "REGISTRY_MAX_REQUEST_PIXELS"),
                    str(args.hostile_pixels),
                )
            url = serve_registry("hostile", **pixels)
            limits = Settings(**{k.removeprefix("REGISTRY_").lower(): v for k, v in pixels.items()})
            return url, processes[0].pid, limits

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
        if args.only_hostile:
            digest = register(ours)
            processes.pop(0).stop()
            hostile_phase(*serve_hostile(), digest, image)
            return 0
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

        digest = register(ours)
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
        plain = start_service(
            {**env, "REGISTRY_DATA_DIR": str(root / "data1")},
            command=[sys.executable, "-c", NO_RECEIPTS_SERVER],
            log_path=root / "no-receipts.log",
        )
        processes.append(plain)
        compare(
            "1b. POST /predict with receipts (registry) vs without (baseline)",
            args.seconds,
            args.clients,
            lambda h: h.post(f"{plain.url}/models/{digest}/predict", files=files),
            lambda h: h.post(f"{ours}/models/{digest}/predict", files=files),
            "target >= 0.9x",
        )
        processes.remove(plain)
        plain.stop()
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

        # 4. Hostile images, against one worker that stores the model registered in phase 1.
        processes.pop(0).stop()
        hostile_phase(*serve_hostile(), digest, image)
        return 0
    finally:
        for process in processes:
            process.stop()
        node.stop()


if __name__ == "__main__":
    sys.exit(main())
