#!/usr/bin/env python3
"""Load on the clinic service, then the same load through a chain outage. Loopback only, bounded.

    python scripts/load_service.py [--clients 200] [--seconds 30] [--workers 2]
                                   [--outage-after 8] [--down-seconds 5] [--json]

Starts an anvil node with its state on disk and ``registry serve --workers N`` on free loopback
ports, deploys the registry and registers two checkpoints over HTTP. Then:

(a) load: ``--clients`` concurrent clients (asyncio, one httpx pool of that many connections) send
    ``/verify`` with a registered checkpoint (expected: verified) or a tampered copy (expected: not
    verified, unknown) and ``/models/{digest}/predict`` with known images (expected: the class a
    local inference of the same checkpoint gives) for ``--seconds``. Reported: requests, req/s,
    p50 / p99 latency, 5xx answers and wrong answers (both must be 0, and every answer a 200), and
    the resident memory of the server processes (uvicorn master and workers, VmRSS sampled every
    0.5 s): after warm-up, peak, end.
(b) outage: the same load; after ``--outage-after`` seconds the node gets SIGTERM (it writes its
    state), stays down ``--down-seconds``, and is started again from that state. While it is down
    (from the stop plus the gate's validity TTL, during which a model checked just before may
    still answer, to the restart) every answer must be a 503 and no prediction may succeed; after
    the restart, answers must be 200 again within ``--max-recovery`` seconds. Reported: answers
    by status in each phase, time to the first 200 and to full recovery.

Exit status: 0 every invariant held, 1 one failed (each is printed), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

MAX_CLIENTS = 1_000
MAX_SECONDS = 600.0
VALIDITY_TTL_S = 1.0
REQUEST_TIMEOUT_S = 30.0
RSS_INTERVAL_S = 0.5
TEST_SET = hashlib.sha256(b"load_service test split").hexdigest()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- models and images -------------------------------------------------------------------------


@dataclass
class Model:
    checkpoint: bytes
    card: bytes
    digest: str  # sha256:<hex>
    expected: list[int] = field(default_factory=list)  # class per image in IMAGES


def _checkpoint(seed: int) -> bytes:
    import torch

    from modelformat.spec import ModelSpec
    from training.checkpoint import checkpoint_bytes
    from training.model import build_model

    spec = ModelSpec(
        in_channels=1,
        input_size=28,
        num_classes=2,
        class_names=("benign", "malignant"),
        mean=(0.5,),
        std=(0.25,),
        dataset="load-test (not medical data)",
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return checkpoint_bytes(build_model(spec), spec)


def _card(checkpoint: bytes) -> bytes:
    from training.card import CARD_SCHEMA, CARD_SCHEMA_VERSION, canonical_json

    return canonical_json(
        {
            "schema": CARD_SCHEMA,
            "schema_version": CARD_SCHEMA_VERSION,
            "model_name": "lenet5-load-test",
            "checkpoint": {
                "format": "safetensors",
                "file_name": "model.safetensors",
                "sha256": hashlib.sha256(checkpoint).hexdigest(),
            },
            "parent_digest": None,
            "dataset": {"name": "load-test", "splits": {"test": {"size": 1, "sha256": TEST_SET}}},
            "evaluation": {"split": "test", "test_set_sha256": TEST_SET, "accuracy_bps": 9000},
            "intended_use": "load tests only",
        }
    )


def _images(count: int) -> list[bytes]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(2024)
    images = []
    for n in range(count):
        if n % 2:
            pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
        else:  # a bright blob on a dark field, somewhere
            y, x = np.mgrid[0:28, 0:28]
            cy, cx = rng.integers(6, 22, 2)
            pixels = (255 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 30.0)).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        images.append(buffer.getvalue())
    return images


def _local_classes(checkpoint: bytes, images: list[bytes]) -> tuple[list[int], float]:
    """The class of each image by the same checkpoint, run here; and the smallest top-2 margin."""
    import numpy as np
    import torch

    from registry.api.images import decode_image
    from training.checkpoint import load_checkpoint_bytes
    from training.model import predict_proba

    network, spec = load_checkpoint_bytes(checkpoint)
    pixels = np.stack(
        [
            decode_image(i, in_channels=1, size=28, max_bytes=1 << 20, max_pixels=1 << 20)
            for i in images
        ]
    )
    probabilities = predict_proba(network, torch.from_numpy(pixels), spec)
    top2 = probabilities.topk(2, dim=1).values
    return probabilities.argmax(dim=1).tolist(), float((top2[:, 0] - top2[:, 1]).min())


# --- the service under test --------------------------------------------------------------------


class Service:
    """anvil (state on disk) + ``registry serve --workers N``, both on free loopback ports."""

    def __init__(self, root: Path, workers: int) -> None:
        from registry.devnet import AnvilNode, ServiceProcess

        self.root = root
        self.workers = workers
        self.node = AnvilNode(root / "chain", state_interval=1)
        self.base = ""  # the service's URL, once started
        self.registrar_key = secrets.token_urlsafe(24)
        self.server: ServiceProcess | None = None
        self.log_path = root / "server.log"

    def start(self) -> None:
        from registry.chain.connection import make_web3
        from registry.chain.deploy import deploy_and_grant_self
        from registry.chain.keys import account_from_hex
        from registry.devnet import DEV_PRIVATE_KEYS, start_service

        self.node.start()
        account = account_from_hex(DEV_PRIVATE_KEYS[0], "anvil dev key 0")
        _, deployment = deploy_and_grant_self(
            make_web3(self.node.url, 10.0), account, endpoint=self.node.url
        )
        env = {
            "REGISTRY_RPC_URL": self.node.url,
            "REGISTRY_CONTRACT_ADDRESS": deployment.address,
            "REGISTRY_PRIVATE_KEY": DEV_PRIVATE_KEYS[0],
            "REGISTRY_DATA_DIR": str(self.root / "data"),
            "REGISTRY_API_KEYS": f"{self.registrar_key}:registrar",
            "REGISTRY_VALIDITY_TTL_S": str(VALIDITY_TTL_S),
            "REGISTRY_REQUEST_TIMEOUT_S": "2",
            "REGISTRY_IDENTITY_TTL_S": "2",
            "NO_PROXY": "*",
        }
        self.server = start_service(
            env,
            workers=self.workers,
            log_path=self.log_path,
            start_timeout=120,
            stop_timeout=20,
        )
        self.base = self.server.url

    def register(self, model: Model) -> None:
        files = {"checkpoint": ("m.safetensors", model.checkpoint), "card": ("c", model.card)}
        response = httpx.post(
            f"{self.base}/models",
            files=files,
            headers={"X-API-Key": self.registrar_key},
            timeout=60,
            trust_env=False,
        )
        if response.status_code != 201:
            raise RuntimeError(f"registration failed: {response.status_code} {response.text}")

    def pids(self) -> list[int]:
        """The uvicorn master and every process below it."""
        if self.server is None or not self.server.running:
            return []
        found, queue = [], [self.server.pid]
        while queue:
            pid = queue.pop()
            found.append(pid)
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            queue.extend(int(c) for c in children)
        return found

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.node.stop()


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (their own, not their children's)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    """VmRSS of the server's processes, summed, every ``RSS_INTERVAL_S``."""

    def __init__(self, service: Service) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.samples: list[tuple[float, int, int]] = []  # (time, KiB summed, processes)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            pids = self.service.pids()
            self.samples.append((time.monotonic(), sum(rss_kib(p) for p in pids), len(pids)))
            self._halt.wait(RSS_INTERVAL_S)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def window(self, start: float, end: float) -> list[int]:
        return [kib for t, kib, _ in self.samples if start <= t <= end]


# --- load ----------------------------------------------------------------------------------------

KINDS = ("verify-valid", "verify-tampered", "predict-a", "predict-b")


@dataclass
class Result:
    kind: str
    start: float
    end: float
    status: int  # 0: no answer (transport error)
    wrong: str | None = None  # why a 200 was the wrong answer


@dataclass
class Workload:
    models: list[Model]
    tampered: bytes
    images: list[bytes]


async def _one(http: httpx.AsyncClient, base: str, work: Workload, n: int) -> Result:
    kind = KINDS[n % len(KINDS)]
    start = time.monotonic()
    try:
        if kind.startswith("verify"):
            model = work.models[(n // 4) % 2]
            data = model.checkpoint if kind == "verify-valid" else work.tampered
            response = await http.post(
                f"{base}/verify",
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            )
        else:
            model = work.models[0 if kind == "predict-a" else 1]
            index = (n // 4) % len(work.images)
            response = await http.post(
                f"{base}/models/{model.digest}/predict",
                files=[("images", ("scan.png", work.images[index], "image/png"))],
            )
    except httpx.HTTPError:
        return Result(kind, start, time.monotonic(), 0)
    result = Result(kind, start, time.monotonic(), response.status_code)
    if response.status_code == 200:
        result.wrong = _judge(kind, response.json(), model, work, n)
    return result


def _judge(kind: str, body: dict[str, Any], model: Model, work: Workload, n: int) -> str | None:
    if kind == "verify-valid":
        if body.get("verified") is not True or body.get("digest") != model.digest:
            return f"valid checkpoint judged {body.get('reason')} ({body.get('digest')})"
    elif kind == "verify-tampered":
        if body.get("verified") is not False or body.get("reason") != "unknown":
            return f"tampered checkpoint judged {body.get('reason')}"
    else:
        index = (n // 4) % len(work.images)
        got = [p["class_index"] for p in body.get("predictions", [])]
        if got != [model.expected[index]]:
            return f"image {index}: class {got}, local inference {model.expected[index]}"
        if body.get("provenance", {}).get("model_digest") != model.digest:
            return "provenance names another model"
    return None


async def run_load(
    base: str,
    work: Workload,
    clients: int,
    seconds: float,
    pool: int,
    events: Any = None,
) -> list[Result]:
    """``clients`` tasks sending requests back to back until ``seconds`` have passed, each with
    a connection of its own: one ``httpx.AsyncClient`` per ``pool`` of them (httpx looks through
    its whole pool for every request, so one pool of 200 makes the load generator, not the
    service, the bottleneck: measured, 14 s of client CPU in 17 s against 9 s of server CPU)."""
    results: list[Result] = []
    counter = iter(range(10**9))
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S, pool=REQUEST_TIMEOUT_S)
    sizes = [min(pool, clients - start) for start in range(0, clients, pool)]
    https = [
        httpx.AsyncClient(
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            timeout=timeout,
            trust_env=False,
        )
        for size in sizes
    ]
    deadline = time.monotonic() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            results.append(await _one(http, base, work, next(counter)))

    try:
        tasks = [
            asyncio.create_task(client(http))
            for http, size in zip(https, sizes, strict=True)
            for _ in range(size)
        ]
        if events is not None:
            tasks.append(asyncio.create_task(events()))
        # Every request has its own timeout; this bounds the whole, whatever happens.
        await asyncio.wait_for(asyncio.gather(*tasks), seconds + 2 * REQUEST_TIMEOUT_S + 60)
    finally:
        for http in https:
            await http.aclose()
    return results


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


# --- phases --------------------------------------------------------------------------------------


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)
    outage: dict[str, Any] = field(default_factory=dict)

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.failures.append(message)


def load_phase(service: Service, work: Workload, args: argparse.Namespace, report: Report) -> None:
    sampler = RssSampler(service)
    sampler.start()
    pids = service.pids()
    server_cpu, client_cpu = cpu_s(pids), time.process_time()
    started = time.monotonic()
    results = asyncio.run(run_load(service.base, work, args.clients, args.seconds, args.pool))
    ended = time.monotonic()
    server_cpu, client_cpu = cpu_s(pids) - server_cpu, time.process_time() - client_cpu
    time.sleep(1.0)  # a last sample or two after the load
    sampler.stop()

    elapsed = max(r.end for r in results) - started
    latencies = [1000 * (r.end - r.start) for r in results]
    statuses = Counter(r.status for r in results)
    wrong = [r for r in results if r.wrong]
    per_kind = {}
    for kind in KINDS:
        mine = [r for r in results if r.kind == kind]
        times = [1000 * (r.end - r.start) for r in mine]
        per_kind[kind] = {
            "requests": len(mine),
            "p50_ms": round(_percentile(times, 50), 1),
            "p99_ms": round(_percentile(times, 99), 1),
            "non_200": sum(r.status != 200 for r in mine),
            "wrong": sum(bool(r.wrong) for r in mine),
        }
    warm = started + args.warmup
    after_warmup = sampler.window(warm, ended)
    during = sampler.window(started, ended + 1.0)
    rss = {
        "start_mib": round(after_warmup[0] / 1024, 1) if after_warmup else None,
        "peak_mib": round(max(during) / 1024, 1) if during else None,
        "end_mib": round(after_warmup[-1] / 1024, 1) if after_warmup else None,
        "processes": max((n for _, _, n in sampler.samples), default=0),
        "samples": len(during),
    }
    report.load = {
        "clients": args.clients,
        "seconds": args.seconds,
        "workers": args.workers,
        "requests": len(results),
        "req_per_s": round(len(results) / elapsed, 1),
        "p50_ms": round(_percentile(latencies, 50), 1),
        "p99_ms": round(_percentile(latencies, 99), 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors_5xx": sum(v for k, v in statuses.items() if k >= 500),
        "no_answer": statuses.get(0, 0),
        "wrong": len(wrong),
        "wrong_examples": sorted({r.wrong for r in wrong if r.wrong})[:5],
        "per_kind": per_kind,
        "rss": rss,
        # Where the two machines' worth of CPU went: this process is the load generator.
        "server_cpu_s": round(server_cpu, 1),
        "client_cpu_s": round(client_cpu, 1),
        "wall_s": round(ended - started, 1),
    }
    report.check(report.load["errors_5xx"] == 0, f"load: {report.load['errors_5xx']} 5xx answers")
    report.check(
        not wrong, f"load: {len(wrong)} wrong answers, e.g. {report.load['wrong_examples']}"
    )
    report.check(set(statuses) == {200}, f"load: answers other than 200: {report.load['statuses']}")
    if rss["start_mib"] and rss["end_mib"]:
        growth = rss["end_mib"] / rss["start_mib"] - 1
        rss["growth"] = round(growth, 3)
        report.check(
            growth <= args.max_rss_growth,
            f"load: server memory grew {growth:.0%} after warm-up "
            f"({rss['start_mib']} -> {rss['end_mib']} MiB; limit {args.max_rss_growth:.0%})",
        )


def outage_phase(
    service: Service, work: Workload, args: argparse.Namespace, report: Report
) -> None:
    marks: dict[str, float] = {}

    async def outage() -> None:
        await asyncio.sleep(args.outage_after)
        marks["stop_begin"] = time.monotonic()
        await asyncio.to_thread(service.node.stop)  # SIGTERM; anvil writes its state and exits
        marks["stop_done"] = time.monotonic()
        await asyncio.sleep(args.down_seconds)
        marks["start_begin"] = time.monotonic()
        await asyncio.to_thread(service.node.start)  # same port, same state file
        marks["start_done"] = time.monotonic()

    started = time.monotonic()
    results = asyncio.run(
        run_load(service.base, work, args.clients, args.seconds, args.pool, events=outage)
    )
    if len(marks) < 4:
        report.check(False, f"outage: the node was not stopped and started again ({marks})")
        return

    # While the node is down, a model checked less than the validity TTL ago may still answer
    # from the gate's cache: that grace is its own phase, not "down".
    down_from = marks["stop_done"] + VALIDITY_TTL_S + 0.1

    def phase(r: Result) -> str:
        if r.end < marks["stop_begin"]:
            return "before"
        if r.start >= marks["start_done"]:
            return "after"
        if r.start >= down_from and r.end <= marks["start_begin"]:
            return "down"
        if r.start >= marks["start_begin"]:
            return "restarting"
        return "stopping"

    by_phase: dict[str, Counter[int]] = defaultdict(Counter)
    wrong = [r for r in results if r.wrong]
    for r in results:
        by_phase[phase(r)][r.status] += 1
    down = [r for r in results if phase(r) == "down"]
    after = sorted((r for r in results if phase(r) == "after"), key=lambda r: r.start)
    first_ok = next((r for r in after if r.status == 200), None)
    last_bad = max((r.end for r in after if r.status != 200), default=None)
    recovery = (last_bad - marks["start_done"]) if last_bad is not None else 0.0
    report.outage = {
        "requests": len(results),
        "seconds": round(max(r.end for r in results) - started, 1),
        "stop_s": round(marks["stop_done"] - marks["stop_begin"], 2),
        "down_s": round(marks["start_begin"] - marks["stop_done"], 2),
        "restart_s": round(marks["start_done"] - marks["start_begin"], 2),
        "by_phase": {
            p: {str(k): v for k, v in sorted(by_phase[p].items())}
            for p in ("before", "stopping", "down", "restarting", "after")
        },
        "down_requests": len(down),
        "down_503": sum(r.status == 503 for r in down),
        "down_successes": sum(r.status == 200 for r in down),
        "down_predictions_ok": sum(r.status == 200 and r.kind.startswith("predict") for r in down),
        "first_200_after_restart_s": (
            round(first_ok.end - marks["start_done"], 2) if first_ok else None
        ),
        "recovery_s": round(recovery, 2),
        "errors_5xx_not_503": sum(r.status >= 500 and r.status != 503 for r in results),
        "wrong": len(wrong),
        "wrong_examples": sorted({r.wrong for r in wrong if r.wrong})[:5],
    }
    o = report.outage
    report.check(o["wrong"] == 0, f"outage: {o['wrong']} wrong answers, e.g. {o['wrong_examples']}")
    report.check(
        o["errors_5xx_not_503"] == 0, f"outage: {o['errors_5xx_not_503']} 5xx other than 503"
    )
    report.check(
        set(by_phase["before"]) <= {200}, f"outage: before the stop: {o['by_phase']['before']}"
    )
    report.check(o["down_requests"] > 0, "outage: no request fell in the down window")
    report.check(
        o["down_503"] == o["down_requests"],
        f"outage: while down, answers other than 503: {o['by_phase']['down']}",
    )
    report.check(
        o["down_predictions_ok"] == 0, f"outage: {o['down_predictions_ok']} predictions while down"
    )
    report.check(first_ok is not None, "outage: no 200 after the restart")
    report.check(
        recovery <= args.max_recovery,
        f"outage: answers were not all 200 until {recovery:.1f} s after the restart "
        f"(limit {args.max_recovery} s): {o['by_phase']['after']}",
    )


# --- output -----------------------------------------------------------------------------------


def print_human(report: Report, args: argparse.Namespace) -> None:
    load, outage = report.load, report.outage
    if load:
        print(
            f"(a) load: {load['clients']} clients for {load['seconds']:g} s, "
            f"{load['workers']} workers"
        )
        print(
            f"    {'request':<16}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'not 200':>9}{'wrong':>7}"
        )
        for kind, row in load["per_kind"].items():
            print(
                f"    {kind:<16}{row['requests']:>9}{row['p50_ms']:>9}{row['p99_ms']:>9}"
                f"{row['non_200']:>9}{row['wrong']:>7}"
            )
        print(
            f"    total: {load['requests']} requests, {load['req_per_s']} req/s, "
            f"p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, 5xx {load['errors_5xx']}, "
            f"wrong {load['wrong']}, statuses {load['statuses']}"
        )
        rss = load["rss"]
        print(
            f"    server RSS ({rss['processes']} processes, {rss['samples']} samples): "
            f"after warm-up {rss['start_mib']} MiB, peak {rss['peak_mib']} MiB, "
            f"end {rss['end_mib']} MiB"
        )
        print(
            f"    CPU over {load['wall_s']} s: server {load['server_cpu_s']} s, "
            f"load generator {load['client_cpu_s']} s ({os.cpu_count()} cores)"
        )
    if outage:
        print(
            f"(b) outage: node stopped after {args.outage_after:g} s "
            f"(SIGTERM took {outage['stop_s']} s), down {outage['down_s']} s, "
            f"restart took {outage['restart_s']} s; {outage['requests']} requests"
        )
        for name, statuses in outage["by_phase"].items():
            print(f"    {name:<11} {statuses}")
        print(
            f"    while down: {outage['down_requests']} requests, {outage['down_503']} 503, "
            f"{outage['down_successes']} successes ({outage['down_predictions_ok']} predictions)"
        )
        print(
            f"    after the restart: first 200 in {outage['first_200_after_restart_s']} s, "
            f"all 200 from {outage['recovery_s']} s; 5xx other than 503: "
            f"{outage['errors_5xx_not_503']}; wrong {outage['wrong']}"
        )
    if report.failures:
        print("FAILED:")
        for failure in report.failures:
            print(f"  - {failure}")
    else:
        print("all invariants held")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clients", type=int, default=200, help="concurrent clients (default: 200)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="each phase (default: 30)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (default: 2)")
    parser.add_argument(
        "--pool",
        type=int,
        default=10,
        help="connections per httpx client; --clients connections in all (default: 10)",
    )
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds before memory counts (default: 5)"
    )
    parser.add_argument(
        "--outage-after", type=float, default=8.0, help="stop the node after (default: 8 s)"
    )
    parser.add_argument(
        "--down-seconds", type=float, default=5.0, help="keep it down (default: 5 s)"
    )
    parser.add_argument(
        "--max-recovery", type=float, default=5.0, help="seconds to all-200 after (default: 5)"
    )
    parser.add_argument(
        "--max-rss-growth",
        type=float,
        default=0.25,
        help="server memory growth allowed after warm-up, as a fraction (default: 0.25)",
    )
    parser.add_argument("--images", type=int, default=16, help="distinct images (default: 16)")
    parser.add_argument("--skip-outage", action="store_true", help="run (a) only")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS or not 1 <= args.pool <= MAX_CLIENTS:
        parser.error(f"--clients and --pool must be 1..{MAX_CLIENTS}")
    if not 1 <= args.seconds <= MAX_SECONDS or not 1 <= args.workers <= 16:
        parser.error(f"--seconds must be 1..{MAX_SECONDS:g} and --workers 1..16")
    if not args.skip_outage and args.outage_after + args.down_seconds + 3 > args.seconds:
        parser.error("--seconds must leave room for --outage-after + --down-seconds + 3 s")

    root = Path(tempfile.mkdtemp(prefix="load-service-"))
    service = Service(root, args.workers)
    report = Report()
    try:
        log(f"preparing two checkpoints and {args.images} images in {root}")
        models = [
            Model(c, _card(c), "sha256:" + hashlib.sha256(c).hexdigest())
            for c in (_checkpoint(1), _checkpoint(2))
        ]
        images = _images(args.images)
        for model in models:
            model.expected, margin = _local_classes(model.checkpoint, images)
            if margin < 1e-4:
                raise RuntimeError(f"an image is a near tie for {model.digest} ({margin:.2e})")
        tampered = bytearray(models[0].checkpoint)
        tampered[-1] ^= 0x01  # a byte of the last tensor: still a well-formed checkpoint
        work = Workload(models, bytes(tampered), images)

        log(f"starting anvil and registry serve --workers {args.workers}")
        service.start()
        for model in models:
            service.register(model)
        log(f"(a) load: {args.clients} clients, {args.seconds:g} s")
        load_phase(service, work, args, report)
        if not args.skip_outage:
            log(f"(b) outage: stop after {args.outage_after:g} s, down {args.down_seconds:g} s")
            outage_phase(service, work, args, report)
    finally:
        service.stop()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    if args.json:
        print(json.dumps({**report.__dict__, "ok": not report.failures}, indent=2))
    else:
        print_human(report, args)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
