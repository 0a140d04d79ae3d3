"""The training package's exception tree.

Registry code catches ``TrainingError`` at its CLI and API boundary, so everything raised here on
purpose derives from it. Each class is also a ``ValueError``: every one of them means "the input
(files, flags, headers) is wrong", never "the code is broken". Callers read fields, never parse
``str(exc)``. Messages say what happened, the offending value, and what to do next.

    TrainingError (ValueError)
    ├── SpecError          a checkpoint header / metadata that does not describe a network we build
    ├── CheckpointError    checkpoint bytes that are not a loadable safetensors file
    ├── DataError          a dataset file, key, shape, dtype or label we cannot use
    ├── CardError          a model card that has no canonical form (NaN, unsupported type...)
    └── ConfigError        training settings or CLI flags out of range

This module is torch-free so that header validation can raise these without importing torch.
"""

from __future__ import annotations


class TrainingError(ValueError):
    """Base of every error the training package raises on purpose."""

    code = "training_error"


class SpecError(TrainingError):
    """A metadata key or tensor header that does not describe a network this package builds."""

    code = "invalid_model_spec"

    def __init__(self, key: str, value: object, problem: str) -> None:
        shown = repr(value) if len(repr(value)) <= 120 else repr(value)[:117] + "..."
        super().__init__(
            f"checkpoint header field {key!r} = {shown}: {problem}; "
            "re-export the checkpoint with `registry train` (or `python -m training`)"
        )
        self.key, self.value, self.problem = key, value, problem


class CheckpointError(TrainingError):
    """Bytes that are not a well-formed safetensors checkpoint."""

    code = "invalid_checkpoint"

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"not a loadable checkpoint: {problem}; only safetensors files written by "
            "`registry train` are accepted"
        )
        self.problem = problem


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
