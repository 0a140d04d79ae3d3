"""The adversarial corpus of model files (``corpus.py``), at three levels.

1. ``inspect_checkpoint``: the expected exception and rule, with Python allocation bounded while
   it refuses (``tracemalloc``; the 10-million-entry header and the 2 GiB zip bomb stay within
   the 1 MiB header cap + 8 MiB).
2. ``Gate.admit``: the file's digest is registered on the chain first, so verification passes and
   only the pre-validator stands between the bytes and the loader; the loader is never called.
3. The HTTP API: ``POST /models`` and ``POST /verify`` answer the expected 4xx in the one error
   shape (never a 5xx), and nothing is stored.

Every level runs inside ``watch.hostile``: no audit event of code execution, no canary.
The controls at the top show that the payloads, the bomb and the watch are real.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from apikit import TEST_SET_DIGEST, Api, assert_error, make_card
from corpus import (
    ALPHABET,
    BY_ID,
    CASES,
    Canary,
    Case,
    cached_bomb,
    cached_many_entries,
    split,
    v_line_polyglot,
)

from modelformat.header import inspect_checkpoint
from registry.chain.client import RegistryClient
from registry.core.digest import Digest, digest_bytes
from registry.core.records import RegisterRequest
from registry.gate import Gate

REFUSED = [case for case in CASES if case.refused is not None]
POLYGLOT = "polyglot-valid-lenet-that-is-also-a-pickle"

_built: dict[str, bytes | bytearray] = {}


def built(case: Case, canary: Canary) -> bytes | bytearray:
    """The case's bytes, built once per session (the canary is session-wide too)."""
    if case.id not in _built:
        _built[case.id] = case.build(canary, case.id)
    return _built[case.id]


def register_on_chain(client: RegistryClient, data: bytes | bytearray) -> Digest:
    """Anchor ``data``'s digest directly, as a registrar whose key leaked could."""
    digest = digest_bytes(data)
    card = digest_bytes(b"card of " + digest.raw)
    client.register(RegisterRequest(digest, 9_000, Digest.parse(TEST_SET_DIGEST), card))
    return digest


def check_refusal(exc: BaseException, case: Case) -> None:
    assert type(exc) is case.refused, (type(exc), exc)
    assert getattr(exc, "problem", None) == case.problem, exc
    assert getattr(exc, "key", None) == case.key, exc


_warm = False


@pytest.fixture
def warm_paths(memory: Any, make_api: Callable[..., Api], canary: Canary) -> None:
    """Run every level once with valid and refused input, so lazy imports happen unwatched."""
    global _warm
    if _warm:
        return
    from corpus import BY_ID, valid

    good = valid(seed=99)
    refused = [bytes(built(BY_ID[i], canary)) for i in ("pickle-p4-open-write", "header-not-json")]
    register_on_chain(memory.client, good)
    Gate(memory.client).admit(good)
    api = make_api()
    for data in (good, *refused):
        api.register(data, make_card(data))
        api.verify(data)
        api.http.post("/verify", files={"file": ("m.safetensors", data)})
    _warm = True


# --- controls: the payloads, the bomb, the big header and the watch are real -----------------------


def test_every_payload_leaves_its_canary_when_a_careless_loader_unpickles_it(
    canary: Canary, tmp_path: Path
) -> None:
    # The corpus builds its payloads for the session canary; here they are rebuilt for a private
    # one and unpickled in a child process (torch blocked: no payload may depend on it).
    private = Canary(tmp_path / "traps", canary.env_prefix + "CONTROL_")
    private.root.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    expected = {}
    for case in CASES:
        if case.detonate:
            (work / f"{case.id}.bin").write_bytes(bytes(case.build(private, case.id)))
            (work / f"{case.id}.how").write_text(case.detonate)
            expected[case.id] = private.env(case.id) if "environ" in case.id else case.id
    corpus_py = Path(__file__).with_name("corpus.py")
    child = subprocess.run(
        [sys.executable, str(corpus_py), str(work)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.returncode == 0, child.stderr
    variables = set(child.stdout.split())
    deadline = time.monotonic() + 10  # Popen payloads run `touch` asynchronously
    while True:
        missing = sorted(
            case
            for case, trace in expected.items()
            if not (private.root / trace).exists() and trace not in variables
        )
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(expected) >= 24
    assert not missing, f"payloads that did not fire: {missing}\n{child.stderr}"


def test_the_watch_fails_a_block_in_which_a_pickle_runs_code(
    tmp_path: Path, make_watch: Callable[[Canary], Any]
) -> None:
    private = Canary(tmp_path / "traps", "REGISTRY_CANARY_WATCH_CONTROL_")
    private.root.mkdir()
    payload = pickle.dumps({"w": _OpenForWriting(private.file("opened"))})
    watch = make_watch(private)

    with pytest.raises(AssertionError) as info, watch.hostile("control"):
        pickle.loads(payload)

    assert "pickle.find_class" in str(info.value)
    assert "opened" in str(info.value)


def test_the_watch_fails_a_block_in_which_exec_runs(
    tmp_path: Path, make_watch: Callable[[Canary], Any]
) -> None:
    private = Canary(tmp_path / "traps", "REGISTRY_CANARY_WATCH_CONTROL_")
    private.root.mkdir()
    watch = make_watch(private)

    with pytest.raises(AssertionError, match=r"'compile'.*'exec'"), watch.hostile("control"):
        exec("x = 1 + 1", {})


class _OpenForWriting:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def test_the_zip_bomb_declares_a_2_gib_member_that_inflates_to_zeros() -> None:
    bomb = cached_bomb()
    with zipfile.ZipFile(BytesIO(bomb)) as archive:
        (info,) = archive.infolist()
        with archive.open(info) as member:
            first = member.read(1 << 20)
    assert len(bomb) < 4 << 20
    assert info.file_size == 2 << 30 and info.compress_type == zipfile.ZIP_DEFLATED
    assert first == bytes(1 << 20)


def test_the_big_header_has_ten_million_distinct_keys() -> None:
    data = cached_many_entries()
    rows = np.frombuffer(data, np.uint8, 90_000_000, 9).reshape(-1, 9)
    # Each key spells its entry's index in base 64: decoding them gives 0..N-1, so all differ.
    digit = np.zeros(256, np.uint32)
    digit[np.frombuffer(ALPHABET, np.uint8)] = np.arange(64)
    index = np.zeros(len(rows), np.uint32)
    for column in range(1, 5):
        index = (index << 6) | digit[rows[:, column]]
    assert data[8:9] == b"{" and data[-1:] == b"}" and len(data) == 8 + 90_000_001
    assert np.array_equal(index, np.arange(10_000_000))
    template = np.frombuffer(b'"....":0,', np.uint8)
    assert (rows[:-1, [0, 5, 6, 7, 8]] == template[[0, 5, 6, 7, 8]]).all()


# --- level 1: the checkpoint guard --------------------------------------------------------------


@pytest.mark.parametrize("case", REFUSED, ids=[case.id for case in REFUSED])
def test_inspect_checkpoint_refuses_the_hostile_file_within_its_memory_bound(
    case: Case, canary: Canary, watch: Any
) -> None:
    data = built(case, canary)

    tracemalloc.start()
    try:
        with watch.hostile(case.id), pytest.raises(case.refused) as info:  # type: ignore[arg-type]
            inspect_checkpoint(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    check_refusal(info.value, case)
    assert peak < case.peak_bytes, f"{peak} bytes allocated, bound {case.peak_bytes}"


# --- level 2: the gate ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", REFUSED, ids=[case.id for case in REFUSED])
def test_the_gate_refuses_the_hostile_file_before_loading_although_its_digest_is_registered(
    case: Case,
    canary: Canary,
    watch: Any,
    memory: Any,
    warm_paths: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = built(case, canary)
    digest = register_on_chain(memory.client, data)
    gate = Gate(memory.client)
    loads: list[bytes] = []
    monkeypatch.setattr("training.checkpoint.load_checkpoint_bytes", lambda *a: loads.append(a[0]))
    assert gate.check(digest).verified  # only the pre-validator stands in the way

    with watch.hostile(case.id), pytest.raises(case.refused) as info:  # type: ignore[arg-type]
        gate.admit(data)

    check_refusal(info.value, case)
    assert loads == []
    assert not gate.loaded(digest)


# --- level 3: the HTTP API -----------------------------------------------------------------------


@pytest.mark.parametrize("case", REFUSED, ids=[case.id for case in REFUSED])
def test_the_api_refuses_the_hostile_upload_with_a_4xx_and_stores_nothing(
    case: Case,
    canary: Canary,
    watch: Any,
    make_api: Callable[..., Api],
    warm_paths: None,
) -> None:
    api = make_api()
    data = bytes(built(case, canary))
    card = make_card(data)
    register_on_chain(api.client, data)  # were it let through, verify would say "verified"

    with watch.hostile(case.id):
        register = api.register(data, card)
        verify = api.verify(data)

    code = {413: "payload_too_large", 400: "invalid_input"}
    assert_error(register, case.register_status, code.get(case.register_status, case.code))
    assert_error(verify, case.verify_status, code.get(case.verify_status, case.code))
    assert not [p for p in (api.settings.data_dir / "store").rglob("*") if p.is_file()]


# --- the polyglot that is a valid checkpoint: accepted, loaded as weights, never unpickled ---------


def test_inspect_checkpoint_accepts_the_lenet_whose_tensor_bytes_are_a_pickle(
    canary: Canary, watch: Any
) -> None:
    data = v_line_polyglot(canary, POLYGLOT, valid_header=True)

    with watch.hostile(POLYGLOT):
        checked = inspect_checkpoint(data)

    assert checked.spec.architecture == "lenet5"
    assert data[checked.data_start : checked.data_start + 6] == b"00cos\n"  # the payload


def test_the_gate_loads_the_pickle_polyglot_as_weights_without_running_it(
    canary: Canary, watch: Any, memory: Any, warm_paths: None
) -> None:
    import safetensors.numpy

    data = v_line_polyglot(canary, POLYGLOT, valid_header=True)
    register_on_chain(memory.client, data)

    with watch.hostile(POLYGLOT):
        model = Gate(memory.client).admit(bytearray(data))

    state = model.network.state_dict()
    for name, array in safetensors.numpy.load(data).items():
        assert state[name].numpy().tobytes() == array.tobytes(), name
    header, _ = split(data)
    assert set(state) == set(header) - {"__metadata__"}


def test_the_api_registers_and_verifies_the_pickle_polyglot_without_running_it(
    canary: Canary, watch: Any, make_api: Callable[..., Api], warm_paths: None
) -> None:
    api = make_api()
    data = v_line_polyglot(canary, POLYGLOT, valid_header=True)

    with watch.hostile(POLYGLOT):
        register = api.register(data, make_card(data))
        verify = api.verify(data)

    assert register.status_code == 201, register.text
    assert verify.status_code == 200 and verify.json()["verified"] is True, verify.text


def test_the_training_loader_refuses_a_header_integer_over_the_digit_limit_itself() -> None:
    # Called without the gate, the loader runs the same header check and answers with its error
    # class (a bare ValueError would be a 500 at the API), here for an integer of 5000 digits.
    from training.checkpoint import load_checkpoint_bytes
    from training.errors import MalformedCheckpoint

    data = BY_ID["header-huge-integer-literal"].build(None, "")  # type: ignore[arg-type]

    with pytest.raises(MalformedCheckpoint, match="integer of 5000 digits") as info:
        load_checkpoint_bytes(bytes(data))
    assert info.value.problem == "header_not_json"


def test_the_gate_checks_the_header_once_and_hands_the_result_to_the_loader(
    memory: Any, warm_paths: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corpus import valid

    import registry.gate
    import training.checkpoint

    data = valid(seed=7)
    register_on_chain(memory.client, data)
    calls: list[str] = []

    def counting(where: str) -> Callable[..., Any]:
        return lambda data, **kw: calls.append(where) or inspect_checkpoint(data, **kw)

    monkeypatch.setattr(registry.gate, "inspect_checkpoint", counting("gate"))
    monkeypatch.setattr(training.checkpoint, "inspect_checkpoint", counting("loader"))

    model = Gate(memory.client).admit(data)

    assert calls == ["gate"]
    assert model.spec == inspect_checkpoint(data).spec
