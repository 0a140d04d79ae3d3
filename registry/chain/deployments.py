"""Deployment records: where the registry contract lives on a chain, and which build it is.

One JSON file per chain id under ``<data_dir>/deployments/``, so the CLI and the API find the
contract without flags once ``registry deploy`` has run.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".deploy-")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(deployment.to_dict(), out, indent=2, sort_keys=True)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    if path.exists():
        os.replace(path, path.with_suffix(".json.previous"))
    os.replace(tmp, path)
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
