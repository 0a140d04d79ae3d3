#!/usr/bin/env python3
"""Many clinic sites on one chain, measured: revocation reach, pulls, the catalogue, /verify.

    python scripts/sim_sites.py [--sites 4] [--mode pull|s3] [--models 6]
                                [--sizes 100,1000,5000] [--big] [--seconds 4] [--json FILE]

One anvil on loopback, one registrar service and ``--sites`` clinic services (``registry serve``
processes, one worker each, each with its own data dir, event index, audit key and API key). In
``pull`` mode each clinic keeps a folder store and pulls from the registrar's service, its
configured mirror; in ``s3`` mode every service keeps its checkpoints in one bucket of an S3 API
(moto's server, a process of its own), so a model the registrar stores is held at every site at
once. The run:

1. registers ``--models`` LeNet checkpoints through the registrar's service; every clinic
   verifies each one (``POST /verify``), pulls it (``POST /models/{d}/pull``) and predicts;
2. times ``registry.pull.fetch`` (read, size cap, SHA-256) against a plain download of the same
   bytes from the same server: the registrar's ``/checkpoint`` in pull mode, the bucket in s3
   mode (goal: plain / pull >= 0.8);
3. fills the chain with pre-signed raw registrations up to each of ``--sizes`` models
   (``--big`` adds 20 000) and times ``GET /models?limit=100`` at every site once its index
   has caught up with the node;
4. measures ``/verify`` throughput at one site alone, then while one client hammers
   ``GET /models?limit=100`` (goal: >= 0.5x);
5. revokes the registered models one by one and times, at every site at once, from the
   revocation's receipt to the first refused predict (goal: p99 <= 2 s at every site).

The default run takes about a minute and a half on two cores (``--mode s3`` about two and a
half, ``--big`` about two). Every process it starts is
stopped at the end, on an error and on Ctrl-C or SIGTERM. ``--json FILE`` writes the figures
and the structural facts (what each site verified, pulled and refused) for a test to read.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from registry.devnet import (
    DEV_ADDRESSES,
    DEV_PRIVATE_KEYS,
    AnvilNode,
    ServiceProcess,
    free_port,
    start_service,
)

# The catalogue benchmark's filler: pre-signed raw registrations, hundreds per block.
sys.path.insert(0, str(Path(__file__).resolve().parent))
with warnings.catch_warnings():  # its TestClient import warns about starlette's httpx use
    warnings.simplefilter("ignore")
    from bench_catalogue import fill
from loadgen import lenet_checkpoint, model_card, request_rate

KEY = "sim-sites-registrar-and-revoker-key"
BUCKET = "sim-sites"
GOAL_REVOCATION_P99_S = 2.0
GOAL_PULL_RATIO = 0.8
GOAL_VERIFY_RATIO = 0.5
REFUSAL_CAP_S = 10.0  # a revoked model still served after this long is a failure, not a figure
AWS_LOOPBACK = {  # dummy credentials for the loopback S3 server; never a user's real ones
    "AWS_ACCESS_KEY_ID": "sim-sites-access-key",
    "AWS_SECRET_ACCESS_KEY": "sim-sites-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def checkpoint(seed: int) -> bytes:
    return lenet_checkpoint(seed, "sim-sites stand-in")


def card(data: bytes) -> bytes:
    return model_card(data, "sim-sites")


def png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (28, 28), 128).save(buffer, format="PNG")
    return buffer.getvalue()


class Cluster:
    """Every process of the run, stopped together however the run ends."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.node: AnvilNode | None = None
        self.processes: list[ServiceProcess] = []
        self._lock = threading.Lock()

    def serve(self, name: str, env: dict[str, str], **kwargs: Any) -> ServiceProcess:
        service = start_service(env, log_path=self.root / f"{name}.log", **kwargs)
        with self._lock:
            self.processes.append(service)
        return service

    def serve_all(self, named_envs: list[tuple[str, dict[str, str]]]) -> list[ServiceProcess]:
        """Start several services at once (each one imports torch: minutes one after another)."""
        started: dict[str, ServiceProcess] = {}
        errors: list[BaseException] = []

        def start(name: str, env: dict[str, str]) -> None:
            try:
                started[name] = self.serve(name, env, workers=1)
            except BaseException as exc:  # reported below, after every thread is done
                errors.append(exc)

        threads = [threading.Thread(target=start, args=pair) for pair in named_envs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return [started[name] for name, _ in named_envs]

    def stop(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.stop()
        self.processes.clear()
        if self.node is not None:
            with contextlib.suppress(Exception):
                self.node.stop()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does: through the ``finally`` that stops everything."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=4, help="clinic services (default 4)")
    parser.add_argument(
        "--mode", choices=("pull", "s3"), default="pull", help="how sites get bytes (default pull)"
    )
    parser.add_argument(
        "--models", type=int, default=6, help="real models registered, then revoked (default 6)"
    )
    parser.add_argument(
        "--sizes",
        default="100,1000,5000",
        help="registered counts at which the catalogue is timed (default 100,1000,5000)",
    )
    parser.add_argument("--big", action="store_true", help="also time the catalogue at 20000")
    parser.add_argument("--requests", type=int, default=20, help="lists timed per site and size")
    parser.add_argument("--pulls", type=int, default=30, help="fetches timed (default 30)")
    parser.add_argument("--seconds", type=float, default=4.0, help="per /verify phase (default 4)")
    parser.add_argument("--clients", type=int, default=2, help="/verify clients (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="write figures and facts here")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data dirs")
    args = parser.parse_args(argv)
    sizes = sorted(
        {int(s) for s in args.sizes.split(",") if s.strip()} | ({20_000} if args.big else set())
    )
    if args.sites < 1 or args.models < 1 or any(s < args.models for s in sizes):
        parser.error("--sites and --models must be >= 1 and every size >= --models")

    root = Path(tempfile.mkdtemp(prefix="sim-sites-"))
    cluster = Cluster(root)
    try:
        with sigterm_as_interrupt():
            report = run(args, sizes, cluster)
    except KeyboardInterrupt:
        print("interrupted: every process stopped", file=sys.stderr)
        return 130
    except httpx.HTTPError as exc:  # a service that stopped answering: its log says why
        args.keep = True
        print(f"error: a service did not answer: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        if args.keep:
            print(f"logs and data dirs kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_table(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def run(args: argparse.Namespace, sizes: list[int], cluster: Cluster) -> dict[str, Any]:
    from registry.chain.connection import make_web3
    from registry.chain.deploy import deploy_and_grant_self
    from registry.chain.keys import account_from_hex
    from registry.core.records import Role

    root = cluster.root
    started = time.monotonic()
    cluster.node = node = AnvilNode(state_interval=None).start()
    account = account_from_hex(DEV_PRIVATE_KEYS[0], "anvil dev key 0")
    client, deployment = deploy_and_grant_self(make_web3(node.url, 30), account, endpoint=node.url)
    client.grant_role(Role.REGISTRAR, DEV_ADDRESSES[1])  # the filler's key: its own nonces
    chain = {"REGISTRY_RPC_URL": node.url, "REGISTRY_CONTRACT_ADDRESS": deployment.address}

    shared: dict[str, str] = {}
    s3: Any = None
    if args.mode == "s3":
        os.environ.update(AWS_LOOPBACK)
        port = free_port()
        moto = cluster.serve(
            "moto",
            {},
            command=[sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            port=port,
            health_path="/moto-api/",
        )
        import boto3

        s3 = boto3.session.Session().client("s3", endpoint_url=moto.url)
        s3.create_bucket(Bucket=BUCKET)
        shared = {
            **AWS_LOOPBACK,
            "REGISTRY_STORE_URL": f"s3://{BUCKET}/models",
            "REGISTRY_S3_ENDPOINT_URL": moto.url,
        }
    registrar_env = {
        **chain,
        **shared,
        "REGISTRY_DATA_DIR": str(root / "registrar"),
        "REGISTRY_PRIVATE_KEY": DEV_PRIVATE_KEYS[0],
        "REGISTRY_API_KEYS": f"{KEY}:registrar+revoker",
    }
    [registrar] = cluster.serve_all([("registrar", registrar_env)])
    site_envs = [
        (
            f"site-{i}",
            {
                **chain,
                **shared,
                "REGISTRY_DATA_DIR": str(root / f"site-{i}"),
                "REGISTRY_API_KEYS": f"sim-sites-reader-key-of-site-{i}:reader",
                "REGISTRY_MIRRORS": registrar.url + "/",
            },
        )
        for i in range(1, args.sites + 1)
    ]
    sites = cluster.serve_all(site_envs)
    print(f"{args.sites} sites up in {time.monotonic() - started:.1f} s ({args.mode} mode)")

    image = png()
    models = register_models(registrar.url, args.models)
    facts = [visit(site.url, models, image) for site in sites]
    pull = time_pulls(args, registrar.url, models, s3)
    catalogue = time_catalogue(args, sizes, node.url, client, [s.url for s in sites])
    verify = verify_under_catalogue_load(args, sites[0].url, models[0][1])
    revocation = revoke_all(client, [s.url for s in sites], models, image)
    for fact, delays, refused in zip(
        facts, revocation["delays"], revocation["refused"], strict=True
    ):
        fact["revocation_delays_s"] = delays
        fact["refused_after_revocation"] = refused
    return {
        "mode": args.mode,
        "mirror": registrar.url + "/",
        "sites": facts,
        "pull": {**pull, "api_pull_p50_s": statistics.median(f["api_pull_s"] for f in facts)},
        "catalogue": catalogue,
        "verify": verify,
        "runtime_s": time.monotonic() - started,
        "pids": [p.pid for p in cluster.processes] + [node.pid],
    }


def register_models(url: str, count: int) -> list[tuple[str, bytes]]:
    """Register ``count`` checkpoints (and cards) through the registrar's service."""
    models = []
    with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": KEY}) as http:
        for seed in range(count):
            data = checkpoint(seed)
            files = {"checkpoint": ("m.safetensors", data), "card": ("card.json", card(data))}
            response = http.post("/models", files=files)
            if response.status_code != 201:
                raise SystemExit(f"registration failed: {response.status_code} {response.text}")
            models.append((response.json()["record"]["digest"], data))
    return models


def visit(url: str, models: list[tuple[str, bytes]], image: bytes) -> dict[str, Any]:
    """One site verifies, pulls and predicts each model: what it saw, and its pull times."""
    seen, pulls = [], []
    octets = {"Content-Type": "application/octet-stream"}
    with httpx.Client(base_url=url, timeout=60) as http:
        for digest, data in models:
            verdict = http.post("/verify", content=data, headers=octets).json()
            t0 = time.perf_counter()
            pulled = http.post(f"/models/{digest}/pull", json={"sources": []})
            pulls.append(time.perf_counter() - t0)
            body = pulled.json()
            files = {"images": ("x.png", image, "image/png")}
            predicted = http.post(f"/models/{digest}/predict", files=files)
            seen.append(
                {
                    "digest": digest,
                    "verified": verdict.get("verified") is True,
                    "pull_status": pulled.status_code,
                    "pull_source": body.get("source"),
                    "pull_verified": body.get("verdict", {}).get("verified") is True,
                    "predict_status": predicted.status_code,
                }
            )
    return {"url": url, "models": seen, "api_pull_s": statistics.median(pulls)}


def time_pulls(
    args: argparse.Namespace, registrar: str, models: list[tuple[str, bytes]], s3: Any
) -> dict[str, Any]:
    """Median seconds of ``registry.pull.fetch`` and of a plain download of the same bytes."""
    import requests

    from registry.core.digest import Digest
    from registry.pull import fetch

    digest = Digest.parse(models[0][0])
    size = len(models[0][1])
    if s3 is None:
        source = registrar + "/"
        url = f"{registrar}/models/{digest}/checkpoint"

        def plain() -> bytes:
            return requests.get(url, timeout=30).content

        endpoint = None
    else:
        key = f"models/checkpoint/{digest.hex[:2]}/{digest.hex[2:]}"
        source = f"s3://{BUCKET}/{key}"
        endpoint = s3.meta.endpoint_url

        def plain() -> bytes:
            return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def pulled() -> bytes:
        return fetch(digest, source, max_bytes=1 << 24, timeout_s=30, s3_endpoint_url=endpoint)

    plain_s, pull_s = [], []
    for _ in range(args.pulls):  # interleaved, so both see the same load
        for call, times in ((plain, plain_s), (pulled, pull_s)):
            t0 = time.perf_counter()
            data = call()
            times.append(time.perf_counter() - t0)
            assert len(data) == size, (len(data), size)
    plain_p50, pull_p50 = statistics.median(plain_s), statistics.median(pull_s)
    return {
        "bytes": size,
        "from": "the registrar's /checkpoint" if s3 is None else "the shared bucket",
        "plain_p50_s": plain_p50,
        "fetch_p50_s": pull_p50,
        "ratio": plain_p50 / pull_p50,
    }


def time_catalogue(
    args: argparse.Namespace, sizes: list[int], node_url: str, client: Any, sites: list[str]
) -> list[dict[str, Any]]:
    """``GET /models?limit=100`` p50 and p99 at every site, at each registered count."""
    from registry.devnet import json_rpc

    rows, registered = [], args.models
    for size in sizes:
        t0 = time.monotonic()
        fill(node_url, client, DEV_PRIVATE_KEYS[1], registered, size)
        filled_s, registered = time.monotonic() - t0, size
        head = int(json_rpc(node_url, "eth_blockNumber"), 16)
        p50s, p99s, pages = [], [], []
        for url in sites:
            with httpx.Client(base_url=url, timeout=60) as http:
                deadline = time.monotonic() + 300
                while http.get("/models", params={"limit": 1}).json()["indexed_to_block"] < head:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{url}'s index did not reach block {head} in 300 s")
                    time.sleep(0.2)
                times = []
                for _ in range(args.requests):
                    t1 = time.perf_counter()
                    response = http.get("/models", params={"limit": 100})
                    times.append(time.perf_counter() - t1)
                    if response.status_code != 200:
                        raise SystemExit(f"GET /models at {url}: {response.status_code}")
                pages.append(len(response.json()["models"]))
            p50s.append(statistics.median(times))
            p99s.append(percentile(times, 0.99))
        rows.append(
            {"registered": size, "filled_s": filled_s, "p50_s": p50s, "p99_s": p99s, "page": pages}
        )
        print(f"catalogue at {size} models: filled in {filled_s:.1f} s")
    return rows


def verify_under_catalogue_load(args: argparse.Namespace, url: str, data: bytes) -> dict[str, Any]:
    """/verify requests per second at one site alone, then while one client lists the catalogue."""
    octets = {"Content-Type": "application/octet-stream"}

    def rate(hammer: bool) -> tuple[float, int]:
        stop = threading.Event()
        lists = [0]

        def lister() -> None:
            with httpx.Client(base_url=url, timeout=60) as http:
                while not stop.is_set():
                    assert http.get("/models", params={"limit": 100}).status_code == 200
                    lists[0] += 1

        thread = threading.Thread(target=lister) if hammer else None
        if thread is not None:
            thread.start()
        try:
            return request_rate(
                args.seconds,
                args.clients,
                lambda h: h.post("/verify", content=data, headers=octets),
                base_url=url,
                failure="/verify failed under load",
            ), lists[0]
        finally:
            stop.set()
            if thread is not None:
                thread.join()

    alone, _ = rate(False)
    loaded, lists = rate(True)
    return {"alone_rps": alone, "with_lists_rps": loaded, "lists": lists, "ratio": loaded / alone}


def revoke_all(
    client: Any, sites: list[str], models: list[tuple[str, bytes]], image: bytes
) -> dict[str, Any]:
    """Revoke each model; at every site at once, time from the receipt to the first refusal."""
    from registry.core.digest import Digest
    from registry.core.records import RevocationReason

    files = {"images": ("x.png", image, "image/png")}
    delays: list[list[float]] = [[] for _ in sites]
    refused = [True] * len(sites)
    errors: list[str] = []
    clients = [httpx.Client(base_url=url, timeout=60) for url in sites]
    try:
        for digest, _ in models:
            for http in clients:  # loaded and served at every site before the revocation
                status = http.post(f"/models/{digest}/predict", files=files).status_code
                if status != 200:
                    raise SystemExit(f"{http.base_url} did not serve {digest} before: {status}")
            client.revoke(Digest.parse(digest), RevocationReason.SAFETY_ISSUE)
            landed = time.monotonic()  # the receipt is in: the revocation is on chain

            def watch(index: int, digest: str = digest, landed: float = landed) -> None:
                http = clients[index]
                try:
                    while time.monotonic() - landed < REFUSAL_CAP_S:
                        status = http.post(f"/models/{digest}/predict", files=files).status_code
                        if status == 403:
                            delays[index].append(time.monotonic() - landed)
                            return
                        if status != 200:
                            errors.append(f"{http.base_url}: {status} after the revocation")
                            return
                        time.sleep(0.01)  # a poll every 10 ms: the figure's resolution
                except httpx.HTTPError as exc:
                    errors.append(f"{http.base_url}: {type(exc).__name__} after the revocation")
                    return
                refused[index] = False

            threads = [threading.Thread(target=watch, args=(i,)) for i in range(len(sites))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise SystemExit(errors[0])
        for index, http in enumerate(clients):  # every revoked model stays refused everywhere
            for digest, _ in models:
                if http.post(f"/models/{digest}/predict", files=files).status_code != 403:
                    refused[index] = False
    finally:
        for http in clients:
            http.close()
    return {"delays": delays, "refused": refused}


def print_table(report: dict[str, Any]) -> None:
    sites = report["sites"]
    print(f"\nmode {report['mode']}, {len(sites)} sites, run {report['runtime_s']:.0f} s\n")
    print(
        "site     verified  pulled  predicted  refused after revocation  p50 s   p99 s  (goal p99 <= 2 s)"
    )
    for i, site in enumerate(sites, 1):
        seen = site["models"]
        delays = site["revocation_delays_s"] or [float("nan")]
        print(
            f"site-{i:<3} {sum(m['verified'] for m in seen):>4}/{len(seen):<4}"
            f"{sum(m['pull_verified'] for m in seen):>4}/{len(seen):<4}"
            f"{sum(m['predict_status'] == 200 for m in seen):>5}/{len(seen):<5}"
            f"{'yes' if site['refused_after_revocation'] else 'NO':>14}"
            f"{statistics.median(delays):>19.2f}{percentile(delays, 0.99):>8.2f}"
        )
    pull = report["pull"]
    print(
        f"\npull of {pull['bytes']:,} bytes from {pull['from']}: plain download p50 "
        f"{pull['plain_p50_s'] * 1e3:.2f} ms, registry.pull.fetch p50 {pull['fetch_p50_s'] * 1e3:.2f} ms "
        f"-> {pull['ratio']:.2f}x (goal >= {GOAL_PULL_RATIO}x); POST /pull end to end p50 "
        f"{pull['api_pull_p50_s'] * 1e3:.1f} ms"
    )
    print("\nGET /models?limit=100, p50 ms per site (worst p99 ms)")
    for row in report["catalogue"]:
        cells = " ".join(f"{p * 1e3:7.2f}" for p in row["p50_s"])
        print(f"{row['registered']:>7} models: {cells}   ({max(row['p99_s']) * 1e3:.2f})")
    verify = report["verify"]
    print(
        f"\n/verify at site-1: {verify['alone_rps']:.1f}/s alone, {verify['with_lists_rps']:.1f}/s "
        f"while one client lists ({verify['lists']} lists) -> {verify['ratio']:.2f}x "
        f"(goal >= {GOAL_VERIFY_RATIO}x)"
    )


if __name__ == "__main__":
    sys.exit(main())
