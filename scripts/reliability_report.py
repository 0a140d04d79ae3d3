#!/usr/bin/env python3
"""One table of how the registry holds up: the security test groups, then the load figures.

    python scripts/reliability_report.py [--quick] [--skip-load] [--json] [--timeout 3600]

1. ``pytest tests/security`` and the related modules elsewhere (hostile uploads and chain outage
   of the API, the header check, hashing and signing), with ``--junitxml``; then the schema
   fuzz once more against a real uvicorn server (``SCHEMA_FUZZ_TRANSPORT=uvicorn``). Each test
   case is counted in a group: by module (model files, files & paths, contract, chain faults, API
   schema fuzz, API abuse, ...), except that every Hypothesis ``@given`` test counts as a
   property test. For the schema fuzz the generated requests are counted too.
2. ``scripts/load_registrations.py`` (concurrent registrations: count, nonce errors, records
   present) if it is there, and ``scripts/load_service.py`` (load, then a chain outage).

``--quick`` shortens everything: 50 schema fuzz examples per operation instead of 500, fewer
registrations, a 12 s service load with 50 clients. Exit status: 0 when every test passed and
every load invariant held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

SECURITY = "tests/security"
RELATED = [
    "tests/api/test_api_hostile_input.py",
    "tests/api/test_api_chain_outage.py",
    "tests/modelformat/test_header.py",
    "tests/registry/test_hashing.py",
    "tests/registry/test_signing.py",
]
SCHEMA_FUZZ = "tests/security/test_api_schema_fuzz.py"

# Module -> case family; a module not listed is shown under its own name.
GROUPS = {
    "test_model_files": "model files",
    "test_header": "model files: checkpoint header check",
    "test_files_and_paths": "files & paths",
    "test_contract_security": "contract",
    "test_static_analysis": "contract: static analysis",
    "test_chain_faults": "chain faults",
    "test_api_chain_outage": "chain faults: API outage",
    "test_api_schema_fuzz": "API schema fuzz (in-process)",
    "test_api_abuse": "API abuse",
    "test_api_hostile_input": "API hostile uploads",
    "test_hashing": "hashing & signing",
    "test_signing": "hashing & signing",
}
PROPERTY = "property tests (Hypothesis)"


@dataclass
class Row:
    group: str
    tried: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0  # xfailed ones included
    xfailed: int = 0
    notes: list[str] = field(default_factory=list)
    failed_names: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def cells(self) -> list[str]:
        return [
            self.group,
            str(self.tried),
            str(self.passed),
            str(self.failed),
            str(self.skipped),
            f"{self.seconds:.0f}",
            "; ".join(
                [
                    *self.notes,
                    *([f"{self.xfailed} xfail"] if self.xfailed else []),
                    *(f"FAILED {name}" for name in self.failed_names[:3]),
                ]
            ),
        ]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- tests -----------------------------------------------------------------------------------------


def _given_tests(path: Path) -> set[str]:
    """Names of the test functions in ``path`` decorated with Hypothesis's ``@given``."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                name = getattr(target, "id", None) or getattr(target, "attr", None)
                if name == "given":
                    names.add(node.name)
    return names


def run_pytest(
    paths: list[str], env: dict[str, str], timeout: float, label: str
) -> tuple[Path, int, float]:
    xml = Path(tempfile.mkstemp(prefix="reliability-", suffix=".xml")[1])
    command = [sys.executable, "-m", "pytest", *paths, "-q", "-p", "no:cacheprovider"]
    command += ["-o", "junit_family=xunit1", f"--junitxml={xml}"]
    log(f"{label}: {' '.join(command[2:])}")
    started = time.monotonic()
    try:
        completed = subprocess.run(
            command,
            cwd=ROOT,
            env={**os.environ, **env},
            timeout=timeout,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        code = completed.returncode
        tail = completed.stdout.strip().splitlines()[-1:] if completed.stdout else []
        log(f"{label}: exit {code} {tail[0] if tail else ''}")
    except subprocess.TimeoutExpired:
        code = -1
        log(f"{label}: did not finish within {timeout:g} s")
    return xml, code, time.monotonic() - started


def parse_junit(xml: Path, rename: dict[str, str] | None = None) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    if not xml.exists() or xml.stat().st_size == 0:
        return rows
    given_cache: dict[str, set[str]] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        classname = case.get("classname", "")
        module = classname.split(".")[-1] if classname else "?"
        file = case.get("file") or classname.replace(".", "/") + ".py"
        if file not in given_cache:
            given_cache[file] = _given_tests(ROOT / file)
        base = case.get("name", "").split("[", 1)[0]
        if base in given_cache[file]:
            group = PROPERTY
        else:
            group = (rename or {}).get(module) or GROUPS.get(module, module)
        row = rows.setdefault(group, Row(group))
        row.tried += 1
        row.seconds += float(case.get("time") or 0)
        if case.find("failure") is not None or case.find("error") is not None:
            row.failed += 1
            row.failed_names.append(f"{module}::{case.get('name')}")
        elif (skipped := case.find("skipped")) is not None:
            row.skipped += 1
            if "xfail" in (skipped.get("type") or "") + (skipped.get("message") or ""):
                row.xfailed += 1
        else:
            row.passed += 1
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if "examples" in props:
            row.notes.append(
                f"{case.get('name', '').split('[', 1)[-1].rstrip(']')}: {props['examples']}"
            )
    for row in rows.values():
        if row.notes:  # schema fuzz: requests per operation
            total = sum(int(n.rsplit(": ", 1)[1]) for n in row.notes)
            row.notes = [f"{total} generated requests over {len(row.notes)} operations"]
    return rows


# --- load ------------------------------------------------------------------------------------------


def run_json_script(command: list[str], timeout: float, label: str) -> tuple[dict[str, Any], int]:
    log(f"{label}: {' '.join(command[1:])}")
    try:
        completed = subprocess.run(command, cwd=ROOT, timeout=timeout, capture_output=True)
    except subprocess.TimeoutExpired:
        log(f"{label}: did not finish within {timeout:g} s")
        return {}, -1
    try:
        data = json.loads(completed.stdout)
    except ValueError:
        log(f"{label}: no JSON report (exit {completed.returncode}):")
        log(completed.stderr.decode(errors="replace")[-3000:])
        data = {}
    return data, completed.returncode


def registration_row(data: dict[str, Any], code: int, seconds: float) -> Row:
    row = Row("load: concurrent registrations", seconds=seconds)
    if not data:
        row.failed = 1
        row.notes.append(f"no report (exit {code})")
        return row
    count = int(data.get("count", 0))
    row.tried = count
    row.passed = int(data.get("registered", 0))
    row.failed = count - row.passed + len(data.get("failures", []))
    row.notes.append(
        f"{data.get('tx_per_s', 0):.1f} tx/s, nonce errors {data.get('nonce_errors')}, "
        f"records present {data.get('listed')}/{count} listed, "
        f"{data.get('looked_up')}/{count} looked up"
    )
    row.notes.extend(f"FAILED: {f}" for f in data.get("failures", [])[:3])
    return row


def service_rows(data: dict[str, Any], code: int, seconds: float) -> list[Row]:
    if not data:
        return [Row("load: clinic service", failed=1, notes=[f"no report (exit {code})"])]
    rows = []
    load, outage = data.get("load") or {}, data.get("outage") or {}
    failures = data.get("failures", [])
    if load:
        statuses = {int(k): v for k, v in load["statuses"].items()}
        rss = load["rss"]
        rows.append(
            Row(
                f"load: service, {load['clients']} clients x {load['seconds']:g} s",
                tried=load["requests"],
                passed=statuses.get(200, 0) - load["wrong"],
                failed=load["requests"] - statuses.get(200, 0) + load["wrong"],
                seconds=load.get("wall_s", 0.0),
                notes=[
                    f"{load['req_per_s']} req/s, p50 {load['p50_ms']} ms, "
                    f"p99 {load['p99_ms']} ms, 5xx {load['errors_5xx']}, "
                    f"wrong verdicts {load['wrong']}, server RSS {rss['start_mib']} -> "
                    f"peak {rss['peak_mib']} -> end {rss['end_mib']} MiB"
                ],
            )
        )
    if outage:
        down = outage["down_requests"]
        rows.append(
            Row(
                f"load: chain outage, node down {outage['down_s']:g} s",
                tried=outage["requests"],
                passed=outage["requests"] - outage["errors_5xx_not_503"] - outage["wrong"],
                failed=outage["errors_5xx_not_503"] + outage["wrong"],
                seconds=outage.get("seconds", 0.0),
                notes=[
                    f"503s while down {outage['down_503']}/{down}, successes while down "
                    f"{outage['down_successes']}, first 200 "
                    f"{outage['first_200_after_restart_s']} s after restart, all 200 after "
                    f"{outage['recovery_s']} s"
                ],
            )
        )
    if failures:
        rows.append(Row("load: service invariants", failed=len(failures), notes=failures[:3]))
    return rows


# --- output ------------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    header = ["group", "tried", "passed", "failed", "skipped", "s", "figures"]
    cells = [header] + [row.cells() for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header) - 1)]
    for n, line in enumerate(cells):
        left = line[0].ljust(widths[0])
        numbers = "  ".join(c.rjust(w) for c, w in zip(line[1:-1], widths[1:], strict=True))
        print(f"{left}  {numbers}  {line[-1]}".rstrip())
        if n == 0:
            print("-" * (sum(widths) + 2 * len(widths) + 7))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs throughout")
    parser.add_argument("--skip-load", action="store_true", help="only the test groups")
    parser.add_argument("--skip-tests", action="store_true", help="only the load figures")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="limit per step in seconds (default: 3600)"
    )
    args = parser.parse_args(argv)

    examples = "50" if args.quick else "500"
    rows: list[Row] = []
    codes: list[int] = []
    if not args.skip_tests:
        related = [p for p in RELATED if (ROOT / p).exists()]
        xml, code, seconds = run_pytest(
            [SECURITY, *related], {"SCHEMA_FUZZ_EXAMPLES": examples}, args.timeout, "tests"
        )
        groups = parse_junit(xml)
        codes.append(code)
        xml2, code2, _ = run_pytest(
            [SCHEMA_FUZZ],
            {"SCHEMA_FUZZ_EXAMPLES": examples, "SCHEMA_FUZZ_TRANSPORT": "uvicorn"},
            args.timeout,
            "schema fuzz on uvicorn",
        )
        codes.append(code2)
        groups.update(parse_junit(xml2, {"test_api_schema_fuzz": "API schema fuzz (uvicorn)"}))
        if not groups:
            rows.append(Row("pytest", failed=1, notes=[f"no junit report (exit {code})"]))
        order = [*dict.fromkeys(GROUPS.values()), "API schema fuzz (uvicorn)", PROPERTY]
        rank = {group: n for n, group in enumerate(order)}
        rows.extend(sorted(groups.values(), key=lambda r: (rank.get(r.group, len(rank)), r.group)))
        for path in (xml, xml2):
            path.unlink(missing_ok=True)
        log(f"tests took {seconds:.0f} s")

    if not args.skip_load:
        script = ROOT / "scripts" / "load_registrations.py"
        if script.exists():
            count = "20" if args.quick else "100"
            started = time.monotonic()
            data, code = run_json_script(
                [sys.executable, str(script), "--count", count, "--threads", "8", "--json"],
                args.timeout,
                "registrations",
            )
            rows.append(registration_row(data, code, time.monotonic() - started))
            codes.append(code)
        else:
            rows.append(Row("load: concurrent registrations", notes=["skipped: no script"]))
        service = [sys.executable, str(ROOT / "scripts" / "load_service.py"), "--json"]
        if args.quick:
            service += ["--clients", "50", "--seconds", "12", "--outage-after", "4"]
            service += ["--down-seconds", "3", "--warmup", "3"]
        started = time.monotonic()
        data, code = run_json_script(service, args.timeout, "service load")
        rows.extend(service_rows(data, code, time.monotonic() - started))
        codes.append(code)

    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
    else:
        print_table(rows)
    failed = any(row.failed for row in rows) or any(code != 0 for code in codes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
