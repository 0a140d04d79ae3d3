"""``POST /models/{digest}/predict``: inference through the gate, with provenance in every answer.

The model's bytes come from the store and enter the network only through ``Gate.admit`` (verified
against the chain, header checked, loaded from the very bytes that were hashed). After that the
gate re-reads the model's validity whenever the last check is older than ``validity_ttl_s``, so a
revocation is refused within that bound in every worker process, each with its own gate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from registry.api.deps import KEY_OPTIONAL, DigestPath, Reader, Services, ServicesDep
from registry.api.errors import responses
from registry.api.images import decode_image, pixels_from_json
from registry.api.routes.models import not_stored
from registry.api.schemas import PredictionOut
from registry.api.uploads import files_bytes, is_multipart, parse_json, read_form
from registry.config import Settings
from registry.core.digest import Digest
from registry.errors import InvalidInput
from registry.gate import LoadedModel

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

    404: unknown digest, or this service does not hold the checkpoint. 403: revoked, unknown to
    the chain, or outside the clinic's policy (`details.reason`). 503: the chain cannot answer."""
    wanted = Digest.parse(digest)
    images = await _read_images(request, services.settings)
    async with services.audited_async(
        "predict", caller, digest=str(wanted), images=len(images)
    ) as entry:
        result = await run_in_threadpool(_predict, services, wanted, images)
        entry.update(block=result["provenance"]["validity_confirmed_at_block"], outcome="predicted")
    # Returned as a ready JSONResponse: the route's response_model documents the shape, and
    # validating our own dict again on every request would only cost time.
    return JSONResponse(result)


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


def _predict(services: Services, digest: Digest, items: list[Any]) -> dict[str, Any]:
    model = _admitted(services, digest)
    pixels = np.stack([_pixels(services.settings, model, item) for item in items])
    gate = services.gate()
    try:
        prediction = gate.predict(digest, pixels)
    except KeyError:  # evicted by other models since admission: admit again
        _admitted(services, digest)
        prediction = gate.predict(digest, pixels)
    return {**prediction.to_dict(), "class_names": list(model.spec.class_names)}


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


def _pixels(settings: Settings, model: LoadedModel, item: Any) -> np.ndarray:
    spec = model.spec
    if isinstance(item, bytes):
        return decode_image(
            item,
            in_channels=spec.in_channels,
            size=spec.input_size,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
        )
    return pixels_from_json(item, in_channels=spec.in_channels, size=spec.input_size)
