"""Keys and bundles of the real ``model_signing`` package, for the model-signing tests.

A hospital that already signs its models sends what ``model_signing``'s own signing API writes
(key-based, EC P-256); the library and the service tests both sign that way, so both sign here.
The package is imported when a bundle is made: a test module skips itself without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """An EC P-256 pair as model_signing takes it: (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def ms_sign(model: Path, private: Path, signature: Path, hashing: Any = None) -> bytes:
    """Sign ``model`` (a file or a folder) with model_signing's own API into ``signature``, as a
    hospital already using it would; ``hashing`` is one of its hashing configurations."""
    import model_signing

    config = model_signing.signing.Config().use_elliptic_key_signer(private_key=private)
    if hashing is not None:
        config.set_hashing_config(hashing)
    config.sign(model, signature)
    return signature.read_bytes()
