"""The training package's exception tree.

Everything raised here on purpose derives from ``TrainingError``, an ``InvalidInput`` of the
product's one tree (rooted in ``modelformat.errors``). Each class is also a ``ValueError``: every one of them means "the input
(files, flags, headers) is wrong", never "the code is broken". Callers read fields, never parse
``str(exc)``. Messages say what happened, the offending value, and what to do next.

    TrainingError (InvalidInput, ValueError)
    ├── DataError          a dataset file, key, shape, dtype or label we cannot use
    ├── CardError          a model card that has no canonical form (NaN, unsupported type...)
    └── ConfigError        training settings or CLI flags out of range

``SpecError`` and ``CheckpointError`` (header and file problems) come from ``modelformat.errors``
and are re-exported here; the whole tree is drawn in ``registry.errors``.
"""

from __future__ import annotations

from modelformat.errors import CheckpointError, InvalidInput, SpecError

__all__ = [
    "CardError",
    "CheckpointError",
    "ConfigError",
    "DataError",
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


class CardError(TrainingError):
    """A model card value that has no canonical JSON form."""

    code = "invalid_model_card"

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(
            f"model card field {path or '<root>'}: {problem}; "
            "the card must hold only strings, finite numbers, booleans, null, lists and objects"
        )
        self.path, self.problem = path, problem


class ConfigError(TrainingError):
    """A training setting outside what this package supports."""

    code = "invalid_training_config"

    def __init__(self, field: str, value: object, problem: str) -> None:
        super().__init__(f"training setting {field} = {value!r}: {problem}")
        self.field, self.value, self.problem = field, value, problem
