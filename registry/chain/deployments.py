"""Deployment records: where the registry contract lives on a chain, and which build it is.

One JSON file per chain id under ``<data_dir>/deployments/``, so the CLI and the API find the
contract without flags once ``registry deploy`` has run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from registry.core.files import atomic_write
from registry.errors import ConfigurationError


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    address: str
    tx_hash: str
    block_number: int
    deployer: str
    artifact_digest: str
    solc_version: str
    source_digest: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def deployment_path(data_dir: Path, chain_id: int) -> Path:
    return data_dir / "deployments" / f"{chain_id}.json"


def save_deployment(data_dir: Path, deployment: Deployment) -> Path:
    """Write atomically; the previous record (if any) is kept next to it as ``.previous``."""
    path = deployment_path(data_dir, deployment.chain_id)
    text = json.dumps(deployment.to_dict(), indent=2, sort_keys=True) + "\n"
    if path.exists():
        # Copied rather than renamed away, so the record never goes missing between the two writes.
        atomic_write(path.with_suffix(".json.previous"), path.read_bytes())
    atomic_write(path, text.encode("utf-8"))
    return path


def load_deployment(data_dir: Path, chain_id: int) -> Deployment | None:
    path = deployment_path(data_dir, chain_id)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Deployment(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"deployment record {path} is unreadable ({exc}); redeploy with `registry deploy` "
            "or set REGISTRY_CONTRACT_ADDRESS",
            path=str(path),
        ) from exc
