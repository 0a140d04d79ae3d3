"""Fixtures for the HTTP service: an app (``create_app``) on the session's eth-tester chain.

Each app gets its own data directory (store, audit log) and the API keys of ``apikit``; the chain
is reverted after each test by the ``memory`` fixture of ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apikit import Api, settings_for
from fastapi.testclient import TestClient

from registry.api import create_app


@pytest.fixture
def make_api(memory: Any, tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """Build an app on the session's eth-tester chain with settings overrides; closed after."""
    opened: list[TestClient] = []

    def build(**overrides: Any) -> Api:
        settings = settings_for(tmp_path / f"data{len(opened)}", **overrides)
        http = TestClient(create_app(settings, client=memory.client))
        http.__enter__()
        opened.append(http)
        return Api(http, memory, settings)

    yield build
    for http in opened:
        http.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()
