"""What the folder-store and S3-store tests share: many services putting the same bytes at once.

A checkpoint store is written by every worker of every service that uploads; the contract is that
concurrent puts of one object all succeed with its digest and leave one object. Both stores'
tests race ``n`` threads released together by a barrier, here.
"""

from __future__ import annotations

import threading

from registry.core.store import CheckpointStore, Kind


def put_at_once(
    store: CheckpointStore, data: bytes, n: int, kind: Kind = "checkpoint"
) -> list[str]:
    """``store.put(data, kind)`` from ``n`` threads released at the same moment: their digests,
    after asserting that none raised."""
    barrier = threading.Barrier(n)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(store.put(data, kind))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results
