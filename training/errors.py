"""The training package's exception tree.

Everything raised here on purpose derives from ``TrainingError``, an ``InvalidInput`` of the
product's one tree (rooted in ``modelformat.errors``). Each class is also a ``ValueError``: every
one of them means "the input (files, flags, cards) is wrong", never "the code is broken". Callers
read fields, never parse ``str(exc)``. Messages say what happened, the offending value, and what to
do next.

    TrainingError (InvalidInput, ValueError)
    ├── DataError          a dataset file, key, shape, dtype or label we cannot use
    ├── CardError          a model card that has no canonical form (NaN, unsupported type...);
    │                      also an ``InvalidModelCard``, whose code it shares: one meaning, one code
    └── ConfigError        training settings or CLI flags out of range

The checkpoint's errors come from ``modelformat.errors`` and are re-exported here: every refusal
of a checkpoint (written or read) is an ``InvalidCheckpoint``, with ``MalformedCheckpoint.problem``
naming the rule, ``PickleRejected`` for a pickle or zip, ``SpecError`` for a header field that
describes no network. The whole tree is drawn in ``registry.errors``.
"""

from __future__ import annotations

from modelformat.errors import (
    InvalidCheckpoint,
    InvalidInput,
    InvalidModelCard,
    MalformedCheckpoint,
    PickleRejected,
    SpecError,
)

__all__ = [
    "CardError",
    "ConfigError",
    "DataError",
    "InvalidCheckpoint",
    "InvalidModelCard",
    "MalformedCheckpoint",
    "PickleRejected",
    "SpecError",
    "TrainingError",
]


class TrainingError(InvalidInput, ValueError):
    """Base of every error the training package raises on purpose."""

    code = "training_error"


class DataError(TrainingError):
    """A dataset we cannot train on. ``source`` names the file (and key) at fault."""

    code = "invalid_dataset"

    def __init__(self, source: str, problem: str, hint: str = "") -> None:
        message = f"{source}: {problem}"
        if hint:
            message += f"; {hint}"
        super().__init__(message)
        self.source, self.problem, self.hint = source, problem, hint


class CardError(InvalidModelCard, TrainingError):
    """A model card value that has no canonical JSON form. ``path`` names the field.

    An ``InvalidModelCard`` first (its code, and the API's 400 for bad input), a ``TrainingError``
    too, so the trainer's callers catch it with the rest of its errors.
    """

    def __init__(
        self,
        path: str,
        problem: str,
        hint: str = "the card must hold only strings, finite numbers, booleans, null, lists "
        "and objects",
    ) -> None:
        super().__init__(
            f"model card field {path or '<root>'}: {problem}; {hint}",
            field=path,
            problem=problem,
        )
        self.path, self.problem = path, problem


class ConfigError(TrainingError):
    """A training setting outside what this package supports."""

    code = "invalid_training_config"

    def __init__(self, field: str, value: object, problem: str) -> None:
        super().__init__(f"training setting {field} = {value!r}: {problem}")
        self.field, self.value, self.problem = field, value, problem
