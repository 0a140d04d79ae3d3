"""Private members stay private: no module reaches into a ``_name`` that another module defines.

Tests, scripts and benchmarks use each module's public surface; a private name is free to change
with its owner. The owner of ``_name`` is every module that defines it (a function, a class, or
``self._name = ...``); any ``obj._name`` outside those modules is reported, except on ``self`` and
``cls``. Dunder names are public protocol and not counted.
"""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def owners(trees: Mapping[str, ast.AST]) -> dict[str, set[str]]:
    """Private name -> the files that define it."""
    found: dict[str, set[str]] = {}
    for path, tree in trees.items():
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = node.name
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                name = node.attr
            if name is not None and _is_private(name):
                found.setdefault(name, set()).add(path)
    return found


def foreign_touches(trees: Mapping[str, ast.AST]) -> list[str]:
    """``file:line name`` for each use of another module's private member."""
    defined = owners(trees)
    touches = []
    for path, tree in sorted(trees.items()):
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            where = defined.get(node.attr)
            if where and path not in where:
                touches.append(f"{path}:{node.lineno} {node.attr}")
    return touches


def project_trees() -> dict[str, ast.AST]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {
        path: ast.parse((ROOT / path).read_text(encoding="utf-8"))
        for path in listed
        if (ROOT / path).is_file()
    }


def test_no_module_touches_a_private_member_of_another() -> None:
    assert foreign_touches(project_trees()) == []


def test_a_planted_touch_of_a_private_member_is_reported() -> None:
    trees = project_trees()
    trees["tests/planted.py"] = ast.parse(
        "from registry.core.audit import AuditLog\n\n"
        "def peek(log: AuditLog) -> object:\n"
        "    return log._tail_hash\n"
    )
    owner = ast.parse(
        "class AuditLog:\n    def __init__(self) -> None:\n        self._tail_hash = b''\n"
    )
    trees["registry/core/audit_planted.py"] = owner
    assert "tests/planted.py:4 _tail_hash" in foreign_touches(trees)
