"""Settings, read from ``REGISTRY_*`` environment variables or a ``.env`` file.

Validated once at start-up with a clear sentence per problem; nothing is built at import time.
CLI flags override fields (``get_settings(**overrides)``).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from registry.core.address import parse_address
from registry.errors import ConfigurationError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="REGISTRY_", env_file=".env", extra="ignore", validate_default=True
    )

    # --- chain ---------------------------------------------------------------------------
    rpc_url: str | None = Field(
        default=None,
        description="'memory' (in-process eth-tester), an http(s) JSON-RPC URL, or unset for "
        "the managed local anvil started by `registry chain start`",
    )
    data_dir: Path = Field(
        default=Path.home() / ".model-registry",
        description="local node state, deployment records, stored checkpoints, audit log",
    )
    contract_address: str | None = Field(
        default=None, description="unset: the deployment recorded in data_dir for this chain"
    )
    chain_id: int | None = Field(default=None, description="refuse any other chain id if set")
    private_key: SecretStr | None = Field(default=None, description="hex key that signs txs")
    keystore: Path | None = Field(default=None, description="encrypted JSON keystore file")
    keystore_password: SecretStr | None = None
    confirmations: int = Field(
        default=1, ge=1, le=256, description="blocks including the tx's own before it counts"
    )
    tx_timeout_s: float = Field(default=120.0, gt=0, description="wait for a receipt at most")
    request_timeout_s: float = Field(default=10.0, gt=0, description="one JSON-RPC request")
    identity_ttl_s: float = Field(
        default=10.0, ge=0, description="how long a checked chain id + contract code is trusted"
    )

    # --- clinic policy -------------------------------------------------------------------
    min_accuracy_bps: int = Field(default=0, ge=0, le=10_000)
    trusted_registrants: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated addresses; empty = any registrar"
    )
    min_attestations: int = Field(
        default=0,
        ge=0,
        le=64,
        description="trusted evaluators that must have attested a model (an accuracy at least "
        "min_accuracy_bps) before the gate admits it; 0 = attestations are not required",
    )
    trusted_evaluators: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated addresses of the evaluators whose attestations count",
    )
    attestation_tolerance_bps: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description="an attestation on the anchored test set counts only within this many basis "
        "points of the registrant's claim",
    )
    require_oms_signature: bool = Field(
        default=False,
        description="the gate also requires an OpenSSF model-signing bundle over the checkpoint, "
        "signed by one of trusted_oms_keys",
    )
    trusted_oms_keys: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="comma-separated PEM public key files whose model-signing bundles are trusted",
    )
    offline_bundles: bool = Field(
        default=False,
        description="when the chain cannot be reached, the gate may admit a model from a stored "
        "proof bundle that verifies against trusted_checkpoint_file; off = fail closed",
    )
    trusted_checkpoint_file: Path | None = Field(
        default=None, description="block numbers and hashes the clinic pinned, for proof bundles"
    )
    offline_bundle_max_age_s: float = Field(
        default=86_400.0,
        gt=0,
        description="a proof bundle older than this (by its block's time) does not admit a model: "
        "it cannot show a revocation made after its block",
    )

    # --- service -------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    validity_ttl_s: float = Field(
        default=1.0, ge=0, le=2.0, description="max staleness of a model's on-chain validity"
    )
    audit_sync_interval_s: float = Field(
        default=0.05,
        ge=0,
        le=1.0,
        description="verify and predict entries are written to the audit log before the "
        "response and fsynced within this many seconds; 0 = fsynced before the response. "
        "Registrations, revocations and downloads are always fsynced before the response",
    )
    max_upload_bytes: int = Field(default=16 << 20, gt=0)
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="a request body must arrive within this many seconds of the request (408 "
        "otherwise), so a client that trickles one in cannot hold a connection forever",
    )
    max_image_bytes: int = Field(default=4 << 20, gt=0)
    # The model needs 28x28: 1 Mi pixels per request bounds the decoding work an anonymous
    # request can cause to about 5x a normal one (scripts/bench_api.py, phase 4); a clinic sends
    # bigger images downscaled. 16 images, each charged at least 256x256 pixels, fill it.
    max_image_pixels: int = Field(
        default=1024 * 1024,
        gt=0,
        description="width x height of one image as its header states it, before any decoding",
    )
    max_request_pixels: int = Field(
        default=1024 * 1024,
        gt=0,
        description="pixels that may be decoded for one request, all its images together",
    )
    max_jpeg_scans: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="a (progressive) JPEG with more scans than this is refused from its markers "
        "(libjpeg's progressive script has 10 for colour, 6 for grayscale)",
    )
    max_images_per_request: int = Field(default=16, gt=0)
    request_deadline_s: float = Field(
        default=10.0,
        gt=0,
        description="decoding and inference for one request stop after this long: 503 with "
        "Retry-After",
    )
    decode_threads: int = Field(
        default=2, ge=1, le=64, description="threads per worker that decode images and predict"
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated host names (or IPs) this service answers to in the Host "
        "header; empty = the bind host, localhost, 127.0.0.1 and ::1",
    )
    # --- where checkpoints come from and live ---------------------------------------------
    store_url: str | None = Field(
        default=None,
        description="unset: the folder <data_dir>/store; s3://bucket/prefix: an S3-compatible "
        "object store shared by several services (credentials the boto3 way: AWS_* variables)",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="the S3 API's URL for a store other than AWS (MinIO, Ceph...)"
    )
    mirrors: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated sources, tried in order, that a predict for a verified model "
        "not stored here pulls it from (another registry service, an http(s) folder, s3://, a "
        "path); the bytes are checked against the digest, so no mirror is trusted",
    )
    pull_timeout_s: float = Field(
        default=60.0, gt=0, description="one pull from one source, connection to last byte"
    )
    index_poll_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="how often the service's index of the chain's events catches up",
    )
    audit_anchor_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="how often the service anchors its audit log's Merkle root on chain (also at "
        "a clean shutdown; skipped when nothing was added); 0 = only at shutdown",
    )
    audit_anchor_private_key: SecretStr | None = Field(
        default=None,
        description="hex key that signs the audit log's anchors; unset = the service's own key "
        "(private_key or keystore); neither = the log is not anchored (said in /health)",
    )
    relay_enabled: bool = Field(
        default=False,
        description="POST /models/relay submits registrations signed offline (EIP-712) with the "
        "service's key, which pays the gas",
    )
    audit_key_file: Path | None = Field(
        default=None,
        description="the secret that keys the audit log's hash chain (created 0600 if missing); "
        "keep it outside the log's reach; unset = <data_dir>/audit.key",
    )
    api_keys: SecretStr | None = Field(
        default=None, description="'key:role[+role],...' with roles registrar, revoker, reader"
    )
    require_key_for_reads: bool = False
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated IPs or CIDRs of the reverse proxies whose X-Forwarded-For "
        "and X-Forwarded-Proto are believed; empty = none: the peer address is the caller",
    )

    @field_validator(
        "trusted_registrants",
        "trusted_evaluators",
        "trusted_proxies",
        "allowed_hosts",
        "mirrors",
        "trusted_oms_keys",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("trusted_registrants", "trusted_evaluators")
    @classmethod
    def _check_addresses(cls, value: list[str]) -> list[str]:
        # A mixed-case entry with a wrong EIP-55 checksum would trust an account nobody meant.
        return [parse_address(a, "the address").lower() for a in value]

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        # Checked here, once: uvicorn would take a malformed entry as a literal host name that
        # no peer address ever equals, and the proxy's headers would be silently ignored.
        networks = []
        for entry in value:
            try:
                networks.append(str(ipaddress.ip_network(entry, strict=False)))
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or CIDR network (e.g. 10.0.0.5, 10.0.0.0/24)"
                ) from None
        return networks

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        # A typo here would lock every user out with 400s that name the Host, not the setting.
        for entry in value:
            name = entry.strip("[]")
            if entry != "*" and not re.fullmatch(
                r"\.?[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*\.?|[0-9A-Fa-f:.]+", name
            ):
                raise ValueError(
                    f"{entry!r} is not a host name, an IP address, a '.domain' suffix or '*' "
                    "(no scheme, port or path: e.g. clinic.example, .example.org, 10.0.0.5)"
                )
        return value

    @model_validator(mode="after")
    def _check_attestation_policy(self) -> Settings:
        # A gate that needs more trusted evaluators than the clinic trusts refuses every model;
        # said once at start-up, not as the reason of every refusal.
        if self.min_attestations > len(self.trusted_evaluators):
            raise ValueError(
                f"REGISTRY_MIN_ATTESTATIONS={self.min_attestations} needs at least that many "
                f"addresses in REGISTRY_TRUSTED_EVALUATORS (it has "
                f"{len(self.trusted_evaluators)}); list the evaluators whose attestations count, "
                "or lower the minimum"
            )
        return self

    @field_validator("contract_address")
    @classmethod
    def _check_contract(cls, value: str | None) -> str | None:
        if value is not None:
            parse_address(value, "the address")
        return value

    @field_validator("rpc_url")
    @classmethod
    def _check_rpc(cls, value: str | None) -> str | None:
        if value in (None, "", "anvil", "local"):
            return None
        if value != "memory" and not re.match(r"https?://", value):
            raise ValueError(f"{value!r} is neither 'memory' nor an http(s):// URL")
        return value


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with non-None ``overrides`` (CLI flags) on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], e["msg"]) for e in exc.errors())
        raise ConfigurationError(f"invalid settings: {problems}") from exc


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    """One setting's problem; a rule across settings (no loc) names its settings itself."""
    message = message.removeprefix("Value error, ")
    if not loc:
        return message
    return f"REGISTRY_{'_'.join(str(p) for p in loc).upper()}: {message}"
