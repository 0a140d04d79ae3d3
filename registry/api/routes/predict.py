"""``POST /models/{digest}/predict``: inference through the gate, with provenance in every answer.

The model's bytes come from the store and enter the network only through ``Gate.admit`` (verified
against the chain, header checked, loaded from the very bytes that were hashed). With
``REGISTRY_MIRRORS`` set, a verified model not stored yet is first pulled from the mirrors
(``registry.pull``: once per digest, however many requests ask for it meanwhile). After that the
gate re-reads the model's validity whenever the last check is older than ``validity_ttl_s``, so a
revocation is refused within that bound in every worker process, each with its own gate.

The work of one request is bounded: every image file is checked from its structure and the
request's pixels from the images' headers before anything is decoded (``images``); decoding and
inference run on ``decode_threads`` threads per worker process, never on the event loop nor on
the shared thread pool, so a flood of image requests cannot starve verify, health or the page;
and a request still unfinished after ``request_deadline_s`` (queueing for those threads
included) is stopped between images or before inference with a 503 and ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from registry.api.anchoring import get_anchoring
from registry.api.auth import Caller
from registry.api.deps import KEY_OPTIONAL, DigestPath, Reader, Services, ServicesDep
from registry.api.errors import responses
from registry.api.images import (
    CheckedImage,
    ImageLimits,
    check_image,
    check_request_pixels,
    decode,
    pixels_from_json,
)
from registry.api.routes.imports import pull_bytes
from registry.api.routes.models import not_stored
from registry.api.schemas import PredictionOut
from registry.api.uploads import files_bytes, is_multipart, parse_json, read_form
from registry.config import Settings
from registry.core.digest import Digest
from registry.errors import DeadlineExceeded, InvalidInput
from registry.gate import LoadedModel

T = TypeVar("T")

router = APIRouter(prefix="/models", tags=["inference"])

_PIXELS_DOC = (
    "integers 0-255, [H][W] for a grayscale model or [H][W][3] for an RGB one, H = W = the "
    "model's input size"
)


@router.post(
    "/{digest}/predict",
    response_model=PredictionOut,
    summary="Classify images with a verified, stored checkpoint",
    responses=responses(400, 401, 403, 404, 413, 422, 502, 503),
    openapi_extra={
        **KEY_OPTIONAL,
        "requestBody": {
            "required": True,
            "description": "PNG or JPEG files (type decided by their bytes), or pixel arrays.",
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["images"],
                        "properties": {
                            "images": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            }
                        },
                    }
                },
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": "exactly one of `pixels` (one image) or `images` (many)",
                        "properties": {
                            "pixels": {"type": "array", "items": {}, "description": _PIXELS_DOC},
                            "images": {
                                "type": "array",
                                "items": {"type": "array", "items": {}},
                                "description": "a list of images, each " + _PIXELS_DOC,
                            },
                        },
                    }
                },
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            },
        },
    },
)
async def predict(
    digest: DigestPath, request: Request, services: ServicesDep, caller: Reader
) -> Any:
    """Predicted class, label and probabilities per image, and the provenance of the model that
    answered: its digest, chain, contract, registration transaction and block, the block at which
    its validity was last confirmed, and its accuracy with the test set it was measured on.
    `receipt` names the audit entry that recorded this answer (its index and leaf hash in the
    log's Merkle tree, which the service anchors on chain): check it with
    `registry receipt verify` and a proof from `GET /audit/proof/{index}`.

    404: unknown digest, or this service does not hold the checkpoint (with mirrors
    configured, it is pulled from them first: 502 `pull_failed` when none gives its bytes). 403: revoked, unknown to
    the chain, or outside the clinic's policy (`details.reason`). 413: an image, or the request's
    images together, over the pixel limits, or a JPEG with too many scans. 503: the chain cannot
    answer, or the request was not processed within the service's deadline
    (`deadline_exceeded`, with Retry-After)."""
    wanted = Digest.parse(digest)
    images = await _read_images(request, services.settings)
    async with services.audited_async(
        "predict", caller, digest=str(wanted), images=len(images)
    ) as entry:
        if services.settings.mirrors:
            # Pull-through, before the clock starts: bounded by REGISTRY_PULL_TIMEOUT_S per
            # mirror, and on the shared pool, so the decode threads keep working meanwhile.
            await run_in_threadpool(_pull_through, services, caller, wanted)
        deadline = Deadline(services.settings.request_deadline_s)
        result = await _in_decode_pool(
            services.settings.decode_threads, _predict, services, wanted, images, deadline
        )
        # Rendered here (allow_nan=False) and only then "predicted": a failure to predict or to
        # serialise is recorded as that failure. A ready JSONResponse, because the route's
        # response_model documents the shape and validating our own dict again costs time.
        result["receipt"] = None
        response = JSONResponse(result)
        entry.update(block=result["provenance"]["validity_confirmed_at_block"], outcome="predicted")
    # The entry is written: its receipt names where it sits in the log (registry.api.anchoring),
    # rendered again with it (microseconds); None when the entry's index cannot be told.
    receipt = get_anchoring(request).receipt(result["provenance"])
    if receipt is None:
        return response
    result["receipt"] = receipt
    return JSONResponse(result)


class Deadline:
    """The request's processing clock, started once its body has arrived."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()

    def check(self, stage: str) -> None:
        """Raise ``DeadlineExceeded`` if the time is up before ``stage`` starts."""
        elapsed = time.monotonic() - self.started
        if elapsed >= self.seconds:
            raise DeadlineExceeded(stage, elapsed, self.seconds)


# One executor per worker process (per thread count: settings do not change in a process, but
# tests build apps with several), created on first use.
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _decode_pool(threads: int) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = ThreadPoolExecutor(
                threads, thread_name_prefix=f"image-decode-{threads}"
            )
        return pool


async def _in_decode_pool(threads: int, function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` on the bounded decode threads, in the caller's context (contextvars),
    as Starlette's run_in_threadpool does for its own pool."""
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_decode_pool(threads), context.run, function, *args)


async def _read_images(request: Request, settings: Settings) -> list[Any]:
    """Encoded image files (multipart or a raw image body) or decoded JSON pixel arrays."""
    limit = settings.max_images_per_request
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if is_multipart(request):
        form = await read_form(request, max_files=limit)
        try:
            items: list[Any] = await files_bytes(form, "images")
        finally:
            await form.close()
        if not items:
            raise InvalidInput(
                "the form has no 'images' part; send one or more files as images=@FILE"
            )
    elif content_type == "application/json" or content_type.endswith("+json"):
        items = _json_images(await request.body())
    else:
        body = await request.body()
        if not body:
            raise InvalidInput(
                "no image was sent: use multipart 'images' parts, a PNG/JPEG body, or JSON "
                '{"pixels": [...]} / {"images": [[...], ...]}'
            )
        items = [body]
    if len(items) > limit:
        raise InvalidInput(
            f"{len(items)} images in one request, over the limit of {limit}; split the batch",
            count=len(items),
            limit=limit,
        )
    return items


def _json_images(body: bytes) -> list[Any]:
    payload = parse_json(body)
    if not isinstance(payload, dict) or len({"pixels", "images"} & payload.keys()) != 1:
        raise InvalidInput(
            'the JSON body must be {"pixels": [...one image...]} or {"images": [[...], ...]}'
        )
    if "pixels" in payload:
        return [payload["pixels"]]
    images = payload["images"]
    if not isinstance(images, list) or not images:
        raise InvalidInput('"images" must be a non-empty list of pixel arrays')
    return images


def _predict(
    services: Services, digest: Digest, items: list[Any], deadline: Deadline
) -> dict[str, Any]:
    settings = services.settings
    deadline.check("checking the images")  # the time spent queueing for a decode thread counts
    limits = ImageLimits.from_settings(settings)
    checked = [check_image(item, limits) if isinstance(item, bytes) else item for item in items]
    check_request_pixels(checked, settings.max_request_pixels)
    model = _admitted(services, digest)
    arrays = []
    for number, item in enumerate(checked, start=1):
        deadline.check(f"decoding image {number} of {len(checked)}")
        arrays.append(_pixels(model, item))
    deadline.check("inference")
    pixels = np.stack(arrays)
    gate = services.gate()
    try:
        prediction = gate.predict(digest, pixels)
    except KeyError:  # evicted by other models since admission: admit again
        _admitted(services, digest)
        prediction = gate.predict(digest, pixels)
    return {**prediction.to_dict(), "class_names": list(model.spec.class_names)}


def _pull_through(services: Services, caller: Caller, digest: Digest) -> None:
    """A verified model not stored here comes from the first mirror with the right bytes."""
    if not services.gate().loaded(digest) and not services.store.has(digest.hex, "checkpoint"):
        pull_bytes(services, caller, digest, [], via="pull-through")


def _admitted(services: Services, digest: Digest) -> LoadedModel:
    """The model, valid as of at most ``validity_ttl_s`` ago; loaded from the store if needed."""
    gate = services.gate()
    if gate.loaded(digest):
        try:
            return gate.ensure_valid(digest)
        except KeyError:
            pass
    if not services.store.has(digest.hex, "checkpoint"):
        # Unknown to the chain or not, there is nothing here to run: 404 either way.
        raise not_stored(digest)
    return gate.admit(services.store.get(digest.hex, "checkpoint"))


def _pixels(model: LoadedModel, item: Any) -> np.ndarray:
    spec = model.spec
    if isinstance(item, CheckedImage):
        return decode(item, in_channels=spec.in_channels, size=spec.input_size)
    return pixels_from_json(item, in_channels=spec.in_channels, size=spec.input_size)
