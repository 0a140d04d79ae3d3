#!/usr/bin/env python3
"""Run Slither on the registry contract with the project's pinned solc; fail on a serious finding.

    python scripts/slither_check.py           # every finding; exit 1 on any High or Medium one
    python scripts/slither_check.py --json    # the same as JSON on stdout

Slither compiles through crytic-compile, which runs a native ``solc``. None can be downloaded on the
machines this project runs on, so crytic-compile is handed a launcher, written to a temporary
folder for the run, that answers like native solc in the two ways it is used (``--version``, and
``--standard-json`` on stdin) and runs the npm solc-js build of the same release underneath. A
py-solc-x binary of that release, where one is already installed, is used as it is instead.

The compiler input is the one ``compile_contracts.py`` builds the committed artifact from (same
sources, EVM version and optimizer settings) with the AST added, so the code analysed is the code
deployed.

Any High or Medium finding fails the check. A false positive is answered in the Solidity source,
with a ``slither-disable-next-line`` comment that says why, where a reviewer of the code sees it.

Slither pins web3 < 8, so it lives in its own environment (``.venv-tools``, made by
``scripts/bootstrap.sh``); run this script with that environment's Python.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import shlex
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOLCJS = ROOT / "node_modules" / ".bin" / "solcjs"
TARGET = "contracts/ModelRegistry.sol"
FAILING_IMPACTS = ("High", "Medium")
SHIM_FLAG = "--as-solc"


def compile_script_module() -> ModuleType:
    """compile_contracts.py, for its pinned version, sources and settings."""
    spec = importlib.util.spec_from_file_location(
        "compile_contracts", ROOT / "scripts" / "compile_contracts.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------
# The solc launcher (this file run with SHIM_FLAG): stdlib only, one node process per call.
# ------------------------------------------------------------------------------------------------


def _as_solc(args: list[str]) -> int:
    if "--version" in args:
        done = subprocess.run([str(SOLCJS), "--version"], capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            return done.returncode
        # Native solc's wording; crytic-compile takes the first x.y.z it sees.
        print("solc, the solidity compiler commandline interface")
        print(f"Version: {done.stdout.strip()}")
        return 0
    if "--standard-json" in args:
        # solc-js has no --allow-paths, and needs none: every source arrives inline. Node exits
        # before a pipe drains, cutting the JSON at 64 KiB; a file receives all of it.
        with tempfile.TemporaryFile("w+", encoding="utf-8") as buffer:
            done = subprocess.run(
                [str(SOLCJS), "--standard-json"],
                input=sys.stdin.read(),
                stdout=buffer,
                stderr=subprocess.PIPE,
                text=True,
            )
            buffer.seek(0)
            out = buffer.read()
        sys.stderr.write(done.stderr)
        # solc-js prints a notice (about SMT solvers) on stdout before the JSON: drop it.
        start = 0 if out.startswith("{") else out.find("\n{") + 1
        if not out[start:].startswith("{"):
            sys.stderr.write(f"solc-js printed no JSON; its output began: {out[:200]!r}\n")
            return 1
        sys.stdout.write(out[start:])
        return done.returncode
    sys.stderr.write(f"this launcher only answers --version and --standard-json, not {args}\n")
    return 2


@contextlib.contextmanager
def solcjs_shim() -> Iterator[str]:
    """A temporary executable that crytic-compile can run as solc, backed by solc-js."""
    if not SOLCJS.exists():
        raise SystemExit(f"error: {SOLCJS.relative_to(ROOT)} is missing; run `npm ci`")
    with tempfile.TemporaryDirectory(prefix="slither-solc-") as folder:
        shim = Path(folder) / "solc"
        command = " ".join(shlex.quote(p) for p in (sys.executable, __file__, SHIM_FLAG))
        shim.write_text(f'#!/bin/sh\nexec {command} "$@"\n', encoding="utf-8")
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
        yield str(shim)


@contextlib.contextmanager
def solc_launcher() -> Iterator[str]:
    """Path of a solc that crytic-compile can run: py-solc-x's native binary, else the shim."""
    version = compile_script_module().SOLC_VERSION
    native = None
    try:
        import solcx
        from solcx.exceptions import SolcNotInstalled

        native = str(solcx.install.get_executable(version))
    except (ImportError, SolcNotInstalled):
        pass
    if native is not None:
        yield native
        return
    with solcjs_shim() as shim:
        yield shim


# ------------------------------------------------------------------------------------------------
# The analysis
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    check: str
    impact: str
    confidence: str
    function: str  # "" when the finding is not about one function
    expression: str  # the first source node Slither points at; "" when none
    description: str

    @property
    def serious(self) -> bool:
        return self.impact in FAILING_IMPACTS


@dataclass(frozen=True)
class Report:
    solc_version: str
    optimizer_runs: int | None
    contracts: tuple[str, ...]
    functions: tuple[str, ...]  # ModelRegistry's own
    findings: tuple[Finding, ...]

    @property
    def serious(self) -> list[Finding]:
        return [f for f in self.findings if f.serious]


def standard_input(root: Path = ROOT) -> dict[str, Any]:
    """The artifact's compiler input for the sources under ``root``, with the AST selected."""
    compile_script = compile_script_module()
    settings = json.loads(json.dumps(compile_script.SETTINGS))
    settings["outputSelection"] = {
        "*": {
            "*": ["abi", "metadata", "devdoc", "userdoc", "evm.bytecode", "evm.deployedBytecode"],
            "": ["ast"],
        }
    }
    settings["remappings"] = []
    return {
        "language": "Solidity",
        "sources": {
            # crytic-compile maps findings to lines by reading these paths under ``root``.
            f"contracts/{name}": {
                "content": (root / "contracts" / name).read_text(encoding="utf-8")
            }
            for name in compile_script.SOURCES
        },
        "settings": settings,
    }


def _finding(raw: dict[str, Any]) -> Finding:
    def first(kind: str) -> str:
        return next((e["name"] for e in raw["elements"] if e["type"] == kind), "")

    check, function, expression = raw["check"], first("function"), first("node")
    return Finding(
        check=check,
        impact=raw["impact"],
        confidence=raw["confidence"],
        function=function,
        expression=expression,
        description=" ".join(raw["description"].split()),
    )


IMPACTS = ("High", "Medium", "Low", "Informational", "Optimization")


def _order(f: Finding) -> tuple[int, str, str, str]:
    rank = IMPACTS.index(f.impact) if f.impact in IMPACTS else len(IMPACTS)
    return rank, f.check, f.function, f.expression


def analyse(root: Path = ROOT) -> Report:
    """Every Slither detector on ``root``'s ModelRegistry.sol, compiled as the artifact is."""
    from crytic_compile.platform.solc_standard_json import SolcStandardJson
    from slither import Slither
    from slither.detectors import all_detectors
    from slither.detectors.abstract_detector import AbstractDetector

    # crytic-compile resolves source names against the working directory as well.
    with solc_launcher() as solc, contextlib.chdir(root):
        slither = Slither(
            SolcStandardJson(standard_input(root)), solc=solc, solc_working_dir=str(root)
        )
    for detector in vars(all_detectors).values():
        if isinstance(detector, type) and issubclass(detector, AbstractDetector):
            slither.register_detector(detector)
    raw = [finding for per_detector in slither.run_detectors() for finding in per_detector]
    unit = slither.compilation_units[0]
    (registry,) = slither.get_contract_from_name("ModelRegistry")
    return Report(
        solc_version=unit.compiler_version.version,
        optimizer_runs=unit.compiler_version.optimize_runs,
        contracts=tuple(sorted(c.name for c in slither.contracts)),
        functions=tuple(f.name for f in registry.functions_declared),
        findings=tuple(sorted(map(_finding, raw), key=_order)),
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [SHIM_FLAG]:
        return _as_solc(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON (default: text)")
    args = parser.parse_args(argv)
    report = analyse()
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        for f in report.findings:
            print(f"[{f.impact}/{f.confidence}] {f.check}: {f.description}")
    print(
        f"slither on {TARGET} (solc {report.solc_version}): {len(report.findings)} finding(s), "
        f"{len(report.serious)} of impact {' or '.join(FAILING_IMPACTS)}",
        file=sys.stderr,
    )
    return 1 if report.serious else 0


if __name__ == "__main__":
    sys.exit(main())
