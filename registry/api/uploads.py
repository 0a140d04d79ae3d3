"""Reading uploads: multipart files, a raw body, or JSON, with the parsers' own limits set.

The byte limit on the whole body is ``limits.BodyLimitMiddleware``'s job. Here: a file field must
be a file part (a text field would be decoded as text and silently change the bytes), the number
of parts is bounded, and parse errors are the client's (400), not the service's. What a file *is*
is decided later from its bytes, never from its name or its declared content type.

JSON is parsed with pydantic-core's parser, never ``json.loads``: web3's dependencies raise the
interpreter's recursion limit to 100 000 at import, and at that limit the C decoder of the
standard library overflows the C stack on a body of 90 000 nested brackets and kills the worker
(measured: SIGSEGV). pydantic-core stops at a fixed depth with a ``ValueError``.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic_core import from_json
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from registry.errors import InvalidInput, RegistryError

# Text fields (e.g. a parent digest) are short; files are not text fields.
MAX_TEXT_FIELD_BYTES = 64 * 1024


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def read_form(request: Request, *, max_files: int, max_fields: int = 8) -> FormData:
    if not is_multipart(request):
        raise InvalidInput(
            "this endpoint takes multipart/form-data; send the files as form parts",
            content_type=request.headers.get("content-type", ""),
        )
    try:
        return await request.form(
            max_files=max_files, max_fields=max_fields, max_part_size=MAX_TEXT_FIELD_BYTES
        )
    except (MultiPartException, HTTPException) as exc:
        # Starlette reports its parser's limits and errors as a 400 HTTPException.
        problem = exc.message if isinstance(exc, MultiPartException) else exc.detail
        raise InvalidInput(f"the multipart body could not be read: {problem}") from None


async def file_bytes(form: FormData, field: str) -> bytes:
    """The bytes of the one file in ``field``."""
    values = form.getlist(field)
    if not values:
        raise InvalidInput(
            f"the form has no {field!r} part; send the file as {field}=@FILE",
            field=field,
            got=sorted(set(form.keys())),
        )
    if len(values) > 1:
        raise InvalidInput(f"the form has {len(values)} {field!r} parts; send one", field=field)
    return await _read(values[0], field)


async def files_bytes(form: FormData, field: str) -> list[bytes]:
    """The bytes of every file in ``field``, in the order they were sent."""
    return [await _read(value, field) for value in form.getlist(field)]


async def _read(value: Any, field: str) -> bytes:
    if not isinstance(value, UploadFile):
        raise InvalidInput(
            f"the {field!r} part is a text field; send it as a file part (with a filename), "
            "so its bytes arrive unchanged",
            field=field,
        )
    return await value.read()


def text_field(form: FormData, field: str) -> str | None:
    value = form.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"the {field!r} part must be a text field, not a file", field=field)
    return value.strip() or None


async def body_or_file(request: Request, field: str) -> bytes:
    """A multipart ``field`` file, or else the raw body (``application/octet-stream``)."""
    if is_multipart(request):
        form = await read_form(request, max_files=1)
        try:
            data = await file_bytes(form, field)
        finally:
            await form.close()  # spooled upload files: release them now, not at GC
    else:
        data = await request.body()
    if not data:
        raise InvalidInput(
            f"the upload is empty; send the file as multipart field {field!r} or as the raw body"
        )
    return data


def parse_json(
    data: bytes, *, what: str = "the body", error: type[RegistryError] = InvalidInput
) -> Any:
    """``data`` as a JSON value (depth-bounded parser); ``error`` names what is wrong."""
    try:
        return from_json(data, allow_inf_nan=False)
    except ValueError as exc:
        raise error(f"{what} is not JSON ({exc})") from None
