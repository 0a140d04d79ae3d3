"""One exception tree, one code per meaning.

``code`` is what the CLI's ``--json`` output and the API's error body carry, so two classes with
the same code are two meanings a client cannot tell apart. A subclass may share its parent's code
only when it refines that meaning without changing it; those are listed here, on purpose.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping

import pytest

from modelformat.errors import RegistryError

PACKAGES = ("modelformat", "registry", "training")

# subclass name -> the ancestor whose code it deliberately shares, and why.
SHARES_PARENT_CODE: Mapping[str, str] = {
    # The same refusal; ``problem`` says which rule was broken.
    "MalformedCheckpoint": "InvalidCheckpoint",
    # The same card refusal, raised by the trainer with the field at fault.
    "CardError": "InvalidModelCard",
    # Bad input that is an address, with its source and EIP-55 form as fields.
    "InvalidAddress": "InvalidInput",
    # Every decoded contract error has its own code; their common base is just "the contract
    # refused", as is a revert whose data no ABI error matches.
    "RegistryContractError": "ContractRevert",
    "UndecodedRevert": "ContractRevert",
}


def error_classes(root: type[BaseException]) -> list[type[BaseException]]:
    """``root`` and every class below it, each once."""
    seen: dict[type[BaseException], None] = {}
    stack = [root]
    while stack:
        cls = stack.pop()
        if cls not in seen:
            seen[cls] = None
            stack.extend(cls.__subclasses__())
    return list(seen)


def code_conflicts(classes: Iterable[type[BaseException]], shares: Mapping[str, str]) -> list[str]:
    """Every code held by more than one class, unless each extra holder is listed in ``shares``
    as sharing the code of an ancestor that holds it; also every stale entry of ``shares``."""
    by_code: dict[str, list[type[BaseException]]] = defaultdict(list)
    for cls in classes:
        by_code[getattr(cls, "code", "")].append(cls)
    problems = []
    for code, holders in sorted(by_code.items()):
        owners = [c for c in holders if c.__name__ not in shares]
        for cls in holders:
            parent = shares.get(cls.__name__)
            if parent is not None and not any(
                p.__name__ == parent and p in owners for p in cls.__mro__[1:]
            ):
                problems.append(f"{cls.__name__} is listed as sharing {parent}'s code {code!r}")
        if len(owners) > 1:
            names = ", ".join(sorted(c.__name__ for c in owners))
            problems.append(f"code {code!r} is used by {names}")
    return problems


@pytest.fixture(scope="module")
def product_errors() -> list[type[BaseException]]:
    # Import every module, so that no class is missed because nothing imported its module yet.
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    # Only the product's classes: a test module may define its own subclasses.
    return [cls for cls in error_classes(RegistryError) if cls.__module__.split(".")[0] in PACKAGES]


def test_every_error_code_in_the_product_means_one_thing(
    product_errors: list[type[BaseException]],
) -> None:
    names = {cls.__name__ for cls in product_errors}
    assert {"InvalidCheckpoint", "CardError", "UndecodedRevert", "NonceGap"} <= names
    assert code_conflicts(product_errors, SHARES_PARENT_CODE) == []


def test_every_error_code_is_a_snake_case_name(
    product_errors: list[type[BaseException]],
) -> None:
    bad = [
        (cls.__name__, getattr(cls, "code", None))
        for cls in product_errors
        if not re.fullmatch(r"[a-z]+(_[a-z0-9]+)*", str(getattr(cls, "code", "")))
    ]
    assert bad == []


def test_the_trainers_card_error_is_the_registrys_invalid_model_card() -> None:
    from registry.errors import InvalidModelCard
    from training.errors import CardError, TrainingError

    exc = CardError("metrics.accuracy", "NaN is not a finite number")
    assert isinstance(exc, InvalidModelCard) and isinstance(exc, TrainingError)
    assert exc.to_dict()["code"] == "invalid_model_card"
    assert exc.details["field"] == "metrics.accuracy"


def test_a_planted_duplicate_code_is_reported() -> None:
    # On a tree of its own: a RegistryError subclass made here would stay in the real tree.
    class Root(Exception):
        code = "root"

    class Parent(Root):
        code = "parent"

    class Refines(Parent):
        pass  # inherits "parent"

    class Elsewhere(Root):
        code = "parent"

    tree = error_classes(Root)
    assert code_conflicts(tree, {"Refines": "Parent", "Elsewhere": "Parent"}) == [
        "Elsewhere is listed as sharing Parent's code 'parent'"
    ]
    assert code_conflicts(tree, {"Refines": "Parent"}) == [
        "code 'parent' is used by Elsewhere, Parent"
    ]
    assert code_conflicts(tree, {}) == ["code 'parent' is used by Elsewhere, Parent, Refines"]
    assert code_conflicts([Root, Parent, Refines], {"Refines": "Parent"}) == []
