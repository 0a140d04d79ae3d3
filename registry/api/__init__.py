"""The clinic HTTP service (FastAPI): verify checkpoints, gated inference, registry records.

``create_app(settings)`` builds the application; ``registry serve`` runs it under uvicorn.
"""

from registry.api.app import create_app

__all__ = ["create_app"]
