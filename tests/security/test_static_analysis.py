"""Slither on ModelRegistry.sol, compiled by the project's pinned solc 0.8.28 as the artifact is.

``scripts/slither_check.py`` does the work (and is the command to run by hand). Slither pins
web3 < 8, so it runs in its own environment, ``.venv-tools`` (made by ``scripts/bootstrap.sh``);
these tests run the script there and hold it to its promise: the build analysed is the deployed
one, and no finding of impact High or Medium exists. Outside CI they skip where that environment
has not been made; in CI its absence is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "slither_check.py"
TOOLS_PYTHON = ROOT / ".venv-tools" / "bin" / "python"
SERIOUS = ("High", "Medium")

if not TOOLS_PYTHON.exists() and not os.environ.get("CI"):
    pytest.skip("no .venv-tools: run scripts/bootstrap.sh", allow_module_level=True)


@pytest.fixture(scope="module")
def check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("slither_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: dataclasses look their module up by name while the class is built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    done = subprocess.run(
        [str(TOOLS_PYTHON), str(SCRIPT), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT / "tests",  # any working directory will do
    )
    assert done.returncode in (0, 1), done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    result["exit_code"] = done.returncode
    result["summary"] = done.stderr
    return result


def listing(findings: Any) -> str:
    return "\n".join(f"[{f['impact']}] {f['check']}: {f['description']}" for f in findings)


def test_slither_analyses_the_build_that_is_deployed(check: ModuleType, report: Any) -> None:
    settings = check.compile_script_module().SETTINGS
    assert report["solc_version"] == "0.8.28"
    assert report["optimizer_runs"] == settings["optimizer"]["runs"]
    assert report["contracts"] == ["IModelRegistry", "ModelRegistry"]
    writes = {"register", "revoke", "grantRole", "removeRole", "renounceRole"}
    assert writes | {"transferAdmin", "acceptAdmin", "lookup", "isValid"} <= set(
        report["functions"]
    )


def test_slither_reports_no_high_or_medium_finding(report: Any) -> None:
    serious = [f for f in report["findings"] if f["impact"] in SERIOUS]
    assert serious == [], "Slither found:\n" + listing(serious)
    assert report["exit_code"] == 0
    assert "0 of impact High or Medium" in report["summary"]


def test_solc_launcher_answers_like_native_solc(check: ModuleType) -> None:
    with check.solcjs_shim() as solc:
        version = subprocess.run([solc, "--version"], capture_output=True, text=True, check=True)
        assert re.search(r"^Version: 0\.8\.28\+commit\.", version.stdout, re.MULTILINE)
        standard_input = json.dumps(check.standard_input())
        done = subprocess.run(
            [solc, "--standard-json", "--allow-paths", str(ROOT)],
            input=standard_input,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    # Larger than a pipe's 64 KiB, which solc-js would cut, and nothing printed before the JSON.
    assert len(done.stdout) > 65_536
    output = json.loads(done.stdout)
    assert [e for e in output.get("errors", []) if e["severity"] == "error"] == []
    assert "ast" in output["sources"]["contracts/ModelRegistry.sol"]
