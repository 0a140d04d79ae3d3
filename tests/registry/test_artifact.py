"""The committed contract artifact: fresh against the sources, and refused when unusable."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from registry.chain.artifacts import DEFAULT_ARTIFACT, PROJECT_ROOT, load_artifact
from registry.errors import ConfigurationError

SCRIPT = PROJECT_ROOT / "scripts" / "compile_contracts.py"


@pytest.fixture(scope="module")
def compile_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compile_contracts", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def source_copy(
    tmp_path: Path, compile_script: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The script pointed at a copy of the sources and of the committed artifact."""
    contracts = tmp_path / "contracts"
    (contracts / "build").mkdir(parents=True)
    for name in compile_script.SOURCES:
        shutil.copy(compile_script.CONTRACTS / name, contracts / name)
    shutil.copy(compile_script.ARTIFACT, contracts / "build" / "ModelRegistry.json")
    # The script finds solc-js under ROOT and names the artifact relative to it.
    (tmp_path / "node_modules").symlink_to(compile_script.ROOT / "node_modules")
    monkeypatch.setattr(compile_script, "ROOT", tmp_path)
    monkeypatch.setattr(compile_script, "CONTRACTS", contracts)
    monkeypatch.setattr(compile_script, "ARTIFACT", contracts / "build" / "ModelRegistry.json")
    return contracts


@pytest.mark.slow
def test_compile_check_passes_on_the_committed_artifact() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "matches the sources" in done.stdout


@pytest.mark.slow
def test_compile_check_detects_a_tampered_source(
    source_copy: Path, compile_script: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_sol = source_copy / "ModelRegistry.sol"
    text = registry_sol.read_text(encoding="utf-8")
    tampered = text.replace("MAX_ACCURACY_BPS = 10_000", "MAX_ACCURACY_BPS = 10_001")
    assert tampered != text
    registry_sol.write_text(tampered, encoding="utf-8")
    assert compile_script.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "is stale" in err
    # A line-level diff of the two builds, not "everything is new": the copy was really read.
    assert f'-  "sourceDigest": "{load_artifact().source_digest}"' in err


@pytest.mark.slow
def test_compile_check_detects_a_comment_only_change_to_the_sources(
    source_copy: Path, compile_script: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # The source digest is recorded with every deployment: even a comment makes the build stale.
    interface = source_copy / "IModelRegistry.sol"
    interface.write_text(interface.read_text(encoding="utf-8") + "// edited\n", encoding="utf-8")
    assert compile_script.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "is stale" in err
    assert f'-  "sourceDigest": "{load_artifact().source_digest}"' in err


def test_committed_artifact_records_the_digest_of_the_current_sources(
    compile_script: ModuleType,
) -> None:
    sources = {
        name: (compile_script.CONTRACTS / name).read_text(encoding="utf-8")
        for name in compile_script.SOURCES
    }
    artifact = load_artifact()
    assert artifact.source_digest == compile_script.source_digest(sources)
    assert artifact.solc_version == compile_script.SOLC_VERSION
    assert artifact.path == DEFAULT_ARTIFACT


def test_source_digest_changes_with_any_source_byte(compile_script: ModuleType) -> None:
    base = {"A.sol": "contract A {}", "B.sol": "contract B {}"}
    assert compile_script.source_digest(base) != compile_script.source_digest(
        {**base, "B.sol": "contract B {} "}
    )
    # Moving text across the file boundary must change it too (names and NULs delimit).
    assert compile_script.source_digest({"A.sol": "ab", "B.sol": "c"}) != (
        compile_script.source_digest({"A.sol": "a", "B.sol": "bc"})
    )


def test_load_artifact_of_a_missing_file_raises_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    with pytest.raises(ConfigurationError) as caught:
        load_artifact(missing)
    assert caught.value.details == {"path": str(missing)}
    assert "compile_contracts.py" in caught.value.message


@pytest.mark.parametrize(
    "content",
    [
        b"{ not json",
        b"[]",
        b"{}",
        json.dumps(
            {
                "abi": [],
                "bytecode": "0xzz",
                "deployedBytecode": "0x",
                "compiler": {"version": "0.8.28"},
                "sourceDigest": "x",
            }
        ).encode(),
        json.dumps(
            {
                "abi": [],
                "bytecode": "0x00",
                "deployedBytecode": "0x00",
                "compiler": {},
                "sourceDigest": "x",
            }
        ).encode(),
    ],
    ids=["not-json", "a-list", "empty-object", "bad-hex", "no-compiler-version"],
)
def test_load_artifact_of_a_corrupt_file_raises_configuration_error(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "ModelRegistry.json"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError) as caught:
        load_artifact(path)
    assert caught.value.details == {"path": str(path)}
    assert "not a valid build" in caught.value.message


def test_load_artifact_records_the_sha256_of_the_file(tmp_path: Path) -> None:
    import hashlib

    copy = tmp_path / "copy.json"
    shutil.copy(DEFAULT_ARTIFACT, copy)
    artifact = load_artifact(copy)
    assert artifact.digest == hashlib.sha256(copy.read_bytes()).hexdigest()
    assert artifact.bytecode.startswith(b"\x60\x80")  # solc's creation-code prologue
