"""The root of the product's one exception tree, and the errors of the checkpoint and card formats.

It lives here, below both ``registry`` and ``training``, because both raise these: ``training``
never imports ``registry``, so the root cannot live there. ``registry.errors`` draws the whole tree
and re-exports these classes; ``training.errors`` hangs the trainer's errors under ``InvalidInput``.

Every checkpoint refusal is an ``InvalidCheckpoint``: ``PickleRejected`` for a pickle or zip,
``MalformedCheckpoint`` (with a ``problem`` code) for bytes that are not exactly our safetensors
layout, ``SpecError`` for a header field that describes no network this product builds.

Callers read fields (``exc.reason``), never parse ``str(exc)``. Every message says what happened,
the offending value, and what to do next. ``code`` is the stable machine-readable name used by the
CLI's ``--json`` output and the HTTP API's error body: one meaning, one code (a test enforces it),
except where a subclass deliberately shares its parent's, as ``MalformedCheckpoint`` does.
"""

from __future__ import annotations

from typing import Any, ClassVar

CHECKPOINT_HINT = (
    "export the checkpoint with `registry train` (safetensors.numpy.save_file of a LeNet-5)"
)


class RegistryError(Exception):
    """Base of every error this package raises on purpose."""

    code: ClassVar[str] = "registry_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class InvalidInput(RegistryError):
    code = "invalid_input"


class InvalidModelCard(InvalidInput):
    """A model card the product will not anchor: not canonical JSON, or missing what it must say.

    Here rather than in ``registry.errors`` because the trainer refuses cards too
    (``training.errors.CardError`` is one of these, with the field at fault).
    """

    code = "invalid_model_card"


class InvalidCheckpoint(InvalidInput):
    """The bytes are not a checkpoint this registry will ever deserialise."""

    code = "invalid_checkpoint"

    def __init__(self, reason: str, hint: str = "") -> None:
        message = f"checkpoint refused: {reason}"
        if hint:
            message += f"; {hint}"
        super().__init__(message, reason=reason)
        self.reason = reason


class PickleRejected(InvalidCheckpoint):
    code = "pickle_rejected"

    def __init__(self, kind: str) -> None:
        super().__init__(
            f"the file is a {kind}, which can execute code when loaded and is never loaded here",
            "export the weights with safetensors (`registry train` writes that format)",
        )
        self.kind = kind


class MalformedCheckpoint(InvalidCheckpoint):
    """An ``InvalidCheckpoint`` that says which rule was broken, as a stable ``problem`` code.

    ``key`` names the metadata key at fault when ``problem == "bad_metadata"``, and the tensor
    when ``problem == "non_finite_weights"`` (a NaN or an infinity among its values).
    """

    def __init__(
        self, problem: str, reason: str, hint: str = CHECKPOINT_HINT, key: str | None = None
    ) -> None:
        super().__init__(reason, hint)
        self.problem, self.key = problem, key
        self.details["problem"] = problem
        if key is not None:
            self.details["key"] = key


class SpecError(InvalidCheckpoint, ValueError):
    """A metadata key or tensor header that does not describe a network this product builds.

    ``index`` is the position of the item at fault in a list-valued key (a class name), if any.
    """

    code = "invalid_model_spec"

    def __init__(self, key: str, value: object, problem: str, index: int | None = None) -> None:
        shown = repr(value) if len(repr(value)) <= 120 else repr(value)[:117] + "..."
        # The message names the field, not "checkpoint refused": a spec is also built by hand.
        RegistryError.__init__(
            self,
            f"checkpoint header field {key!r} = {shown}: {problem}; "
            "re-export the checkpoint with `registry train` (or `python -m training`)",
            key=key,
            problem=problem,
        )
        if index is not None:
            self.details["index"] = index
        self.reason = problem
        self.key, self.value, self.problem, self.index = key, value, problem, index
