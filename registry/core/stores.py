"""The one place a service's checkpoint store is chosen from its settings.

``REGISTRY_STORE_URL`` unset keeps the folder ``<data_dir>/store``; ``s3://bucket/prefix`` is a
bucket several services share (``registry.core.store_s3``). The API's services and
``registry serve``'s start-up check both build the store through ``open_store``, so a mistake in
the URL stops the service before it binds, with one sentence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.core.store import CheckpointStore, FileStore
from registry.errors import ConfigurationError

if TYPE_CHECKING:
    from registry.config import Settings


def open_store(settings: Settings) -> CheckpointStore:
    """The store ``settings`` name; no network call (an unreachable bucket is a 503 later)."""
    url = (settings.store_url or "").strip()
    if not url:
        return FileStore(settings.data_dir / "store")
    if url.lower().startswith("s3://"):
        from registry.core.store_s3 import S3Store, parse_store_url

        bucket, prefix = parse_store_url(url)
        return S3Store(
            bucket,
            prefix,
            endpoint_url=settings.s3_endpoint_url or None,
            max_object_bytes=settings.max_upload_bytes,
        )
    # Not echoed: a mistyped value may hold a credential.
    raise ConfigurationError(
        "REGISTRY_STORE_URL is not an s3:// URL, the one kind of remote store this service "
        "knows; give s3://bucket/prefix, or unset it for the folder <data_dir>/store",
        problem="not an s3:// URL",
    )
