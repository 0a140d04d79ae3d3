"""Proof that nothing executes: canaries on disk and in the environment, and an audit hook.

Hostile cases run inside ``watch.hostile(case_id)``. For that span, a ``sys.addaudithook`` hook
records every audit event that code execution goes through (``pickle.find_class``, ``os.system``,
``subprocess.Popen``, ``exec``, ``compile``, process creation, ``os.putenv``) and every ``open``
of a path in the canary directory, in any thread (the API runs requests in worker threads). On
exit the block fails if anything was recorded, or if a canary file or variable appeared.

Audit hooks cannot be removed, so the one hook is installed when this module is imported and does
nothing outside a recording span. Imports are code execution too (``exec`` of a module body): the
``warm_paths`` fixture runs each path once with valid input first, so that a lazy import on
first use is not mistaken for a payload.
"""

from __future__ import annotations

import inspect
import os
import secrets
import sys
import threading
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from corpus import Canary

# What running attacker-chosen code goes through, as CPython names its audit events.
EXECUTION_EVENTS = frozenset(
    {
        "pickle.find_class",
        "exec",
        "compile",
        "os.system",
        "subprocess.Popen",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "os.putenv",
        "os.unsetenv",
        "ctypes.dlopen",
        "ctypes.call_function",
    }
)


class AuditRecorder:
    """Records execution events (and opens under ``trap``) while a span is active."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[tuple[list[tuple[str, str]], str | None]] = []

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self._spans:  # the common case: one attribute read per event
            return
        if event in ("compile", "exec") and _evaluating_annotations(sys._getframe(1)):
            return
        for events, trap in list(self._spans):
            if event in EXECUTION_EVENTS or (event == "open" and _under(args[0], trap)):
                events.append((event, _describe(args)))

    @contextmanager
    def recording(self, trap: str | None = None) -> Iterator[list[tuple[str, str]]]:
        """Collect events until the block ends; ``trap``: also ``open``s of paths under it."""
        span: tuple[list[tuple[str, str]], str | None] = ([], trap)
        with self._lock:
            self._spans.append(span)
        try:
            yield span[0]
        finally:
            with self._lock:
                self._spans.remove(span)


# FastAPI resolves the string annotations of the service's own route functions with
# inspect.get_annotations(eval_str=True) (and typing.ForwardRef) the first time an app answers a
# request successfully (it builds its route context lazily): compile + eval of text from our
# source, not from any upload. Only those frames are
# exempt; a payload could only reach them through pickle.find_class, which is recorded.
_ANNOTATION_FRAMES = frozenset(
    {
        (inspect.__file__, "get_annotations"),
        (inspect.__file__, "<dictcomp>"),
        (typing.__file__, "__init__"),
        (typing.__file__, "_evaluate"),
    }
)


def _evaluating_annotations(frame: Any) -> bool:
    code = frame.f_code
    return (code.co_filename, code.co_name) in _ANNOTATION_FRAMES


def _under(path: object, trap: str | None) -> bool:
    if trap is None or not isinstance(path, str | bytes | os.PathLike):
        return False
    return os.path.abspath(os.fsdecode(path)).startswith(trap)


def _describe(args: tuple[Any, ...]) -> str:
    shown = repr(args)
    return shown if len(shown) <= 200 else shown[:197] + "..."


RECORDER = AuditRecorder()
sys.addaudithook(RECORDER.hook)


class Watch:
    """Runs a hostile case under the recorder and checks the canaries afterwards."""

    def __init__(self, canary: Canary, recorder: AuditRecorder = RECORDER) -> None:
        self.canary = canary
        self.recorder = recorder

    @contextmanager
    def hostile(self, case: str) -> Iterator[None]:
        before = self.canary.fired()
        assert not before, f"canaries fired before {case} ran: {before}"
        with self.recorder.recording(trap=str(self.canary.root)) as events:
            yield
        fired = self.canary.fired()
        assert not events, f"{case}: code ran while it was processed: {events}"
        assert not fired, f"{case}: canaries fired: {fired}"


@pytest.fixture(scope="session")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Canary]:
    """The session's canary: an empty, writable directory and a variable prefix nothing may use."""
    root = tmp_path_factory.mktemp("canary") / "traps"
    root.mkdir()  # it must exist: a payload that runs must be able to leave its file
    trap = Canary(root, f"REGISTRY_CANARY_{secrets.token_hex(4).upper()}_")
    yield trap
    assert not trap.fired(), f"canaries fired during the session: {trap.fired()}"


@pytest.fixture
def watch(canary: Canary) -> Watch:
    return Watch(canary)


@pytest.fixture
def audit() -> AuditRecorder:
    """The session's recorder, for tests that look at events themselves (e.g. ``open``)."""
    return RECORDER


@pytest.fixture
def make_watch() -> Callable[[Canary], Watch]:
    """A Watch with its own canary and recorder (for the controls that make it fire)."""

    def make(private: Canary) -> Watch:
        recorder = AuditRecorder()
        sys.addaudithook(recorder.hook)
        return Watch(private, recorder)

    return make
