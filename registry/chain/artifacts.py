"""The compiled contract the product runs: loaded from the committed build artifact.

No compiler is needed at run time. The artifact's own SHA-256 goes into every deployment record,
so a deployment can always be traced to the exact build (and, through ``source_digest``, to the
exact Solidity sources) that produced it.

There is one committed artifact, ``contracts/build/ModelRegistry.json``, which
``scripts/compile_contracts.py`` writes and checks. The package reaches it as package data,
``registry/chain/ModelRegistry.json``: in the source tree that name is a symlink to the committed
file, and a wheel carries a copy of its bytes, so an installed ``registry`` needs no checkout.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from registry.core.digest import digest_bytes
from registry.errors import ConfigurationError

# The source checkout, for the tests and scripts that run from it (an installed wheel has none).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Resolved, so that messages and deployment records name the committed file, not the symlink.
DEFAULT_ARTIFACT = Path(str(resources.files("registry.chain") / "ModelRegistry.json")).resolve()


@dataclass(frozen=True)
class ContractArtifact:
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes
    solc_version: str
    source_digest: str
    digest: str  # SHA-256 of the artifact file, recorded with each deployment
    path: Path


@cache
def load_artifact(path: Path | None = None) -> ContractArtifact:
    path = path or Path(os.environ.get("REGISTRY_ARTIFACT", DEFAULT_ARTIFACT))
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
        return ContractArtifact(
            abi=data["abi"],
            bytecode=bytes.fromhex(data["bytecode"].removeprefix("0x")),
            deployed_bytecode=bytes.fromhex(data["deployedBytecode"].removeprefix("0x")),
            solc_version=data["compiler"]["version"],
            source_digest=data["sourceDigest"],
            digest=digest_bytes(raw).hex,
            path=path,
        )
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"contract artifact {path} is missing; run `python scripts/compile_contracts.py`",
            path=str(path),
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"contract artifact {path} is not a valid build ({exc}); recompile it with "
            "`python scripts/compile_contracts.py`",
            path=str(path),
        ) from exc
