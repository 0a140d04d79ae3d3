"""The layering of the packages, as a test that fails on a planted violation.

Allowed directions (a module may import what is to its right, never to its left):

    registry.cli ─► registry.api ─► registry.services, registry.gate ─► registry.verify
        ─► registry.chain ─► registry.core ─► registry.errors, registry.config ─► modelformat
    training ─► modelformat          (training never imports registry)
    registry.devnet: imported by no library module but the CLI package (its `chain` command)

Every ``import`` counts, lazy ones inside functions too: a lazy import is still a dependency.
The README's Layout section states the same rules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("modelformat", "registry", "training")

# Third-party stacks that a layer must not pull in (by top-level distribution module).
CHAIN_STACK = ("web3", "eth_abi", "eth_account", "eth_utils", "eth_tester", "hexbytes", "requests")
WEB_STACK = ("fastapi", "starlette", "uvicorn", "h11", "multipart")
TORCH_STACK = ("torch", "torchvision", "safetensors", "sklearn")
# What sits above the chain layer (the trainer sits beside the registry, not below it).
ABOVE_THE_CHAIN = (
    "registry.api",
    "registry.devnet",
    "registry.gate",
    "registry.index",
    "registry.services",
    "registry.verify",
    "registry.cli",
    "training",
)


@dataclass(frozen=True)
class Rule:
    """Modules named by ``source`` (a prefix) may not import modules named by any of ``banned``."""

    source: str
    banned: tuple[str, ...]
    why: str
    allowed_sources: tuple[str, ...] = ()


RULES = (
    Rule(
        "modelformat",
        ("registry", "training", *CHAIN_STACK, *WEB_STACK, *TORCH_STACK, "numpy", "PIL"),
        "the format check is plain Python that both sides share",
        allowed_sources=("modelformat.pixels",),
    ),
    # The one pixel transform training and the service share needs images and arrays; it
    # imports them inside its functions, so a base install (no numpy, no Pillow) still imports
    # modelformat. Nothing else: it sits below both sides.
    Rule(
        "modelformat.pixels",
        ("registry", "training", *CHAIN_STACK, *WEB_STACK, *TORCH_STACK),
        "the pixel transform is numpy and Pillow only, shared by training and the service",
    ),
    Rule("training", ("registry",), "the trainer never depends on the registry"),
    Rule(
        "registry.core",
        ("registry.chain", *ABOVE_THE_CHAIN, *CHAIN_STACK, *WEB_STACK, *TORCH_STACK),
        "the domain talks to no chain, no network and loads no model",
    ),
    Rule(
        "registry.chain",
        (*ABOVE_THE_CHAIN, *WEB_STACK, *TORCH_STACK),
        "the chain layer knows nothing above it",
    ),
    Rule(
        "registry",
        ("registry.devnet",),
        "the dev node is for the demo, scripts and tests; a library module never starts one",
        allowed_sources=("registry.devnet", "registry.cli"),
    ),
    Rule(
        "registry",
        ("registry.api", "registry.cli"),
        "the HTTP service and the CLI are the top: nothing below imports them",
        allowed_sources=("registry.api", "registry.cli"),
    ),
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every module ``source`` imports, absolute names, relative imports resolved."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            found.add(base)
            # `from registry.chain import client` imports the module registry.chain.client.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Rule breaks in ``graph`` (module -> imported modules), one readable line each."""
    found = []
    for module, imports in sorted(graph.items()):
        for rule in RULES:
            if not _within(module, rule.source):
                continue
            if any(_within(module, allowed) for allowed in rule.allowed_sources):
                continue
            for name in sorted(imports):
                if any(_within(name, banned) for banned in rule.banned):
                    found.append(f"{module} imports {name}: {rule.why}")
    return found


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Import cycles among the modules of ``graph`` (each as a path that returns to its start)."""
    edges = {m: sorted(n for n in graph[m] if n in graph and n != m) for m in graph}
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def project_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = module_name(path, ROOT)
            graph[name] = imported_modules(
                path.read_text(encoding="utf-8"), name, path.name == "__init__.py"
            )
    # A package's own __init__ is imported with any of its modules; that is no cycle of ours.
    return {m: {i for i in imports if not m.startswith(i + ".")} for m, imports in graph.items()}


def test_the_packages_import_only_in_the_allowed_directions() -> None:
    assert violations(project_graph()) == []


def test_no_module_imports_itself_back_through_others() -> None:
    assert cycles(project_graph()) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("registry.core.records", "import web3\n", "registry.core.records imports web3"),
        (
            "registry.core.store",
            "def f():\n    from registry.chain.client import RegistryClient\n",
            "registry.core.store imports registry.chain.client",
        ),
        ("training.loop", "from registry import errors\n", "training.loop imports registry"),
        ("modelformat.header", "import torch\n", "modelformat.header imports torch"),
        ("modelformat.spec", "import numpy\n", "modelformat.spec imports numpy"),
        ("modelformat.header", "from PIL import Image\n", "modelformat.header imports PIL"),
        ("modelformat.pixels", "import torch\n", "modelformat.pixels imports torch"),
        (
            "modelformat.pixels",
            "from registry.errors import InvalidImage\n",
            "modelformat.pixels imports registry.errors",
        ),
        (
            "registry.gate",
            "from registry.devnet.anvil import free_port\n",
            "registry.gate imports registry.devnet.anvil",
        ),
        ("registry.chain.client", "from fastapi import FastAPI\n", "imports fastapi"),
        ("registry.chain.client", "from ..api import app\n", "imports registry.api"),
    ],
)
def test_a_planted_violation_is_reported(module: str, source: str, expected: str) -> None:
    graph = project_graph()
    graph[module] = graph.get(module, set()) | imported_modules(source, module, False)
    assert any(expected in line for line in violations(graph))


def test_a_planted_cycle_is_reported() -> None:
    graph = project_graph()
    graph["registry.core.digest"] = graph["registry.core.digest"] | {"registry.core.records"}
    found = cycles(graph)
    assert any({"registry.core.digest", "registry.core.records"} <= set(c) for c in found)


def test_the_devnet_is_reachable_from_the_cli_only() -> None:
    importers = sorted(
        m
        for m, imports in project_graph().items()
        if not m.startswith("registry.devnet")
        and any(_within(i, "registry.devnet") for i in imports)
    )
    # Non-empty: `registry chain` drives the dev node, so an empty list means the scan went blind.
    assert importers, "no module imports registry.devnet; the CLI's `chain` command should"
    assert [m for m in importers if not _within(m, "registry.cli")] == []
