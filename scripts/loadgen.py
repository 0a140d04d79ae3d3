"""The closed-loop load generator the service benchmarks share (bench_api.py, sim_sites.py).

Each client thread sends its next request as soon as the last is answered, so the rate measured
is what the server sustains at that concurrency; two servers compared under the same generator
differ only by themselves. Any answer other than 200 ends the run: a rate of refusals is no rate.
"""

from __future__ import annotations

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
