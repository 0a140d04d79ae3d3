#!/usr/bin/env python3
"""Compile the registry contract reproducibly and write (or check) the committed artifact.

The product only ever loads ``contracts/build/ModelRegistry.json``; this script is the one place a
compiler runs. It drives solc through py-solc-x with a pinned version and fixed settings. The
compiler binary comes from py-solc-x's own install when one exists or can be fetched, otherwise
from the npm package ``solc`` (solc-js, the same compiler built to wasm) in ``node_modules``.

    python scripts/compile_contracts.py           # write the artifact
    python scripts/compile_contracts.py --check   # exit 1 if the artifact is stale
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import solcx
from solcx.exceptions import SolcNotInstalled
from solcx.wrapper import get_solc_version

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "contracts"
ARTIFACT = CONTRACTS / "build" / "ModelRegistry.json"
SOURCES = ("IModelRegistry.sol", "ModelRegistry.sol")
CONTRACT = ("ModelRegistry.sol", "ModelRegistry")

SOLC_VERSION = "0.8.28"
# Cancun runs on both eth-tester (py-evm) and anvil; the optimizer is tuned for many calls
# (registrations and lookups) rather than a cheap one-off deployment.
SETTINGS: dict[str, Any] = {
    "evmVersion": "cancun",
    "optimizer": {"enabled": True, "runs": 10_000},
    "metadata": {"bytecodeHash": "ipfs"},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


def find_solc() -> Path:
    """A solc binary of exactly SOLC_VERSION: py-solc-x's, else the npm solc-js launcher."""
    try:
        return Path(solcx.install.get_executable(SOLC_VERSION))
    except SolcNotInstalled:
        pass
    try:
        return Path(solcx.install_solc(SOLC_VERSION))
    except Exception as exc:
        print(
            f"py-solc-x could not install solc {SOLC_VERSION} ({exc.__class__.__name__}); "
            "using the npm solc-js build",
            file=sys.stderr,
        )
    solcjs = ROOT / "node_modules" / ".bin" / "solcjs"
    if not solcjs.exists():
        sys.exit(f"error: no solc {SOLC_VERSION} found; run `npm ci` to install solc-js")
    found = str(get_solc_version(solcjs))
    if found != SOLC_VERSION:
        sys.exit(f"error: {solcjs} is solc {found}, need {SOLC_VERSION}; run `npm ci`")
    return solcjs


def standard_json_output(stdout: str) -> dict[str, Any]:
    """Parse solc's JSON, skipping any notice solc-js prints before it (e.g. about SMT solvers)."""
    start = stdout.find("\n{") + 1 if not stdout.startswith("{") else 0
    if not stdout[start:].startswith("{"):
        raise SystemExit(f"error: solc printed no JSON; output began: {stdout[:200]!r}")
    result: dict[str, Any] = json.loads(stdout[start:])
    return result


def run_standard_json(solc: Path, standard_input: dict[str, Any]) -> str:
    """solc's standard-JSON output for ``standard_input``, read from a file, not a pipe.

    solc-js prints its answer and exits at once; Node writes to a pipe asynchronously, so an
    answer longer than the pipe's buffer (64 KiB) is cut short. A file gets every byte.
    """
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as out:
        done = subprocess.run(
            [str(solc), "--standard-json"],
            input=json.dumps(standard_input),
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"error: {solc} exited {done.returncode}: {done.stderr[-2000:]}")
        out.seek(0)
        return out.read()


def source_digest(sources: dict[str, str]) -> str:
    """SHA-256 over the sources in name order: name, NUL, content, NUL."""
    h = hashlib.sha256()
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return h.hexdigest()


def compile_artifact() -> dict[str, Any]:
    sources = {name: (CONTRACTS / name).read_text(encoding="utf-8") for name in SOURCES}
    solc = find_solc()
    standard_input = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": SETTINGS,
    }
    output = standard_json_output(run_standard_json(solc, standard_input))
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        sys.exit("error: compilation failed:\n" + "\n".join(e["formattedMessage"] for e in errors))
    compiled = output["contracts"][CONTRACT[0]][CONTRACT[1]]
    return {
        "contractName": CONTRACT[1],
        "abi": compiled["abi"],
        "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
        "compiler": {"name": "solc", "version": SOLC_VERSION, "settings": SETTINGS},
        "sources": {name: hashlib.sha256(t.encode()).hexdigest() for name, t in sources.items()},
        "sourceDigest": source_digest(sources),
    }


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="recompile and fail if the committed artifact differs (default: write)",
    )
    args = parser.parse_args(argv)
    fresh = render(compile_artifact())
    if args.check:
        committed = ARTIFACT.read_text(encoding="utf-8") if ARTIFACT.exists() else ""
        if committed != fresh:
            diff = difflib.unified_diff(
                committed.splitlines(),
                fresh.splitlines(),
                "committed",
                "recompiled",
                lineterm="",
                n=1,
            )
            print("\n".join(list(diff)[:40]), file=sys.stderr)
            print(
                f"error: {ARTIFACT.relative_to(ROOT)} is stale; run "
                "`python scripts/compile_contracts.py` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{ARTIFACT.relative_to(ROOT)} matches the sources (solc {SOLC_VERSION})")
        return 0
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(fresh, encoding="utf-8")
    print(f"wrote {ARTIFACT.relative_to(ROOT)} (solc {SOLC_VERSION})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
