"""What the service benchmarks share (bench_api.py, sim_sites.py): the closed-loop load generator,
and the untrained LeNet-5 checkpoint and minimal model card they register.

Each client thread sends its next request as soon as the last is answered, so the rate measured
is what the server sustains at that concurrency; two servers compared under the same generator
differ only by themselves. Any answer other than 200 ends the run: a rate of refusals is no rate.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

import httpx


def request_rate(
    seconds: float,
    clients: int,
    send: Callable[[httpx.Client], httpx.Response],
    *,
    base_url: str = "",
    timeout: float = 60.0,
    failure: str = "load phase failed",
) -> float:
    """Requests per second from ``clients`` threads over ``seconds``, each with its own
    ``httpx.Client``; a non-200 stops them all and exits with ``failure`` and that answer."""
    done, errors = [0] * clients, []
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=timeout) as http:
            while time.monotonic() < deadline and not errors:
                response = send(http)
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:300]}")
                    return
                done[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"{failure}: {errors[0]}")
    return sum(done) / (time.monotonic() - started)


def lenet_checkpoint(seed: int, dataset: str) -> bytes:
    """An untrained 10-class LeNet-5 checkpoint, seeded: as real to the gate as a trained one."""
    import torch

    from modelformat.spec import ModelSpec
    from training.checkpoint import checkpoint_bytes
    from training.model import build_model

    spec = ModelSpec(
        in_channels=1,
        input_size=28,
        num_classes=10,
        class_names=tuple(str(i) for i in range(10)),
        mean=(0.3,),
        std=(0.3,),
        dataset=dataset,
    )
    torch.manual_seed(seed)
    return checkpoint_bytes(build_model(spec), spec)


def model_card(data: bytes, name: str) -> bytes:
    """The smallest canonical model card a registration of ``data`` accepts (90 % claimed)."""
    from training.card import CARD_SCHEMA, CARD_SCHEMA_VERSION, canonical_json

    return canonical_json(
        {
            "schema": CARD_SCHEMA,
            "schema_version": CARD_SCHEMA_VERSION,
            "model_name": name,
            "checkpoint": {"sha256": hashlib.sha256(data).hexdigest()},
            "evaluation": {"accuracy_bps": 9000, "test_set_sha256": "ab" * 32},
            "parent_digest": None,
        }
    )
