"""``registry serve``: the clinic HTTP service under uvicorn, host/port/workers from the settings.

One worker runs the app object built here. Several workers are separate processes that each build
their own app (and their own gate, so each re-reads revocations itself within the validity TTL):
uvicorn needs an import string for that, ``registry.api.server:worker_app``, a factory that rebuilds
the same settings from ``REGISTRY_SERVE_SETTINGS``, which this process sets for its children
(environment, never the command line, because the settings can hold keys).

A worker that cannot build its app fails after uvicorn has bound the port and said "running on",
with a traceback per worker (and uvicorn's parent then exits 0). So ``check_startup`` first
builds, in this process and before anything listens, what every worker builds from the settings
(the API keys, the allowed hosts, the store, the audit log and its key), and tries the address:
each mistake is one ``ConfigurationError`` line and a non-zero exit, with any number of workers.
"""

from __future__ import annotations

import json
import os
import socket
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


def _never_connect() -> Any:
    raise AssertionError("the start-up check builds no chain client")


def check_startup(settings: Settings) -> None:
    """Raise a ``ConfigurationError`` for whatever would stop a worker of ``settings`` at
    start-up, before anything binds; the chain is not asked (a node that is down is answered
    with 503s until it is back, not a reason to stay down)."""
    from registry.api.app import create_app
    from registry.api.deps import Services

    if settings.workers > 1 and settings.rpc_url == "memory":
        raise ConfigurationError(
            "the 'memory' chain lives inside one process, so each of the "
            f"{settings.workers} workers would have a registry of its own; serve it with "
            "--workers 1, or use a node (`registry chain start`)"
        )
    create_app(settings)  # what a worker builds before its first request: allowed hosts...
    try:
        Services(settings, connect=_never_connect)  # keys, store, audit log and its key
    except OSError as exc:
        raise ConfigurationError(
            f"the data directory {settings.data_dir} cannot be used: "
            f"{exc.strerror or exc} ({exc.filename}); set REGISTRY_DATA_DIR (--data-dir) to a "
            "directory this user may create and write"
        ) from exc
    _check_address(settings.host, settings.port)


def _check_address(host: str, port: int) -> None:
    # The socket uvicorn will bind, made the same way (family from the host, SO_REUSEADDR), and
    # closed at once: a port in use or a host that is not this machine's is said here, in one
    # line, instead of by uvicorn after its workers' start-up messages.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family=family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another "
                "--port / --host (REGISTRY_PORT, REGISTRY_HOST), or stop what holds that port"
            ) from exc


def run(settings: Settings) -> None:
    import uvicorn

    check_startup(settings)
    HeaderDeadlineProtocol.header_timeout_s = settings.body_timeout_s
    if settings.workers > 1:
        os.environ[SETTINGS_ENV] = settings_to_json(settings)
        uvicorn.run(WORKER_APP, factory=True, workers=settings.workers, **uvicorn_options(settings))
    else:
        from registry.api import create_app

        uvicorn.run(create_app(settings), **uvicorn_options(settings))


if __name__ == "__main__":
    # `python -m registry.api.server`: the same as `registry serve` with settings from the environment.
    run(get_settings())
