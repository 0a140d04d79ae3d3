"""``registry serve``: the clinic HTTP service under uvicorn, host/port/workers from the settings.

One worker runs the app object built here. Several workers are separate processes that each build
their own app (and their own gate, so each re-reads revocations itself within the validity TTL):
uvicorn needs an import string for that, ``registry.api.server:worker_app``, a factory that rebuilds
the same settings from ``REGISTRY_SERVE_SETTINGS``, which this process sets for its children
(environment, never the command line, because the settings can hold keys).
"""

from __future__ import annotations

import json
import os
from typing import Any

from pydantic import SecretStr

from registry.api.http_protocol import HeaderDeadlineProtocol
from registry.config import Settings, get_settings
from registry.errors import ConfigurationError

SETTINGS_ENV = "REGISTRY_SERVE_SETTINGS"
WORKER_APP = "registry.api.server:worker_app"


def settings_to_json(settings: Settings) -> str:
    values: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        values[name] = value
    return json.dumps(values, default=str)


def settings_from_json(text: str) -> Settings:
    try:
        values = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"{SETTINGS_ENV} is not JSON ({exc})") from None
    return get_settings(**values)


def worker_app() -> Any:
    """The app of one worker process (uvicorn calls this with ``factory=True``)."""
    from registry.api import create_app

    text = os.environ.get(SETTINGS_ENV)
    settings = settings_from_json(text) if text else get_settings()
    HeaderDeadlineProtocol.header_timeout_s = settings.body_timeout_s
    return create_app(settings)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        # X-Forwarded-For names the caller in the audit log, so it is believed only from the
        # configured proxies (uvicorn walks it from the right, past them). With none configured
        # the peer address is the caller: uvicorn's own default would trust 127.0.0.1, the
        # default bind address, letting any local process choose its recorded identity.
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": list(settings.trusted_proxies),
        "server_header": False,
        # The audit log is the record of every request that matters (and holds no client
        # data); a second, unchained access log per request would only cost time.
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        # Request headers get the same deadline as bodies (uvicorn itself has none for them).
        "http": HeaderDeadlineProtocol,
    }


def run(settings: Settings) -> None:
    import uvicorn

    HeaderDeadlineProtocol.header_timeout_s = settings.body_timeout_s
    if settings.workers > 1:
        if settings.rpc_url == "memory":
            raise ConfigurationError(
                "the 'memory' chain lives inside one process, so each of the "
                f"{settings.workers} workers would have a registry of its own; serve it with "
                "--workers 1, or use a node (`registry chain start`)"
            )
        os.environ[SETTINGS_ENV] = settings_to_json(settings)
        uvicorn.run(WORKER_APP, factory=True, workers=settings.workers, **uvicorn_options(settings))
    else:
        from registry.api import create_app

        uvicorn.run(create_app(settings), **uvicorn_options(settings))


if __name__ == "__main__":
    # `python -m registry.api.server`: the same as `registry serve` with settings from the environment.
    run(get_settings())
