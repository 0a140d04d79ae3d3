"""Verdicts from proof bundles: a checkpoint verified with no node, from a block hash one trusts.

``verify_bundle`` is what ``registry verify --bundle`` and the gate's fallback share: the bundle is
checked (``registry.chain.bundles``) against a trusted block hash and the registry the caller
trusts (never the bundle's own say), and its proven record is judged as ``verify_digest`` judges
one (unknown, revoked, unconfirmed, policy). Every verdict says it came from a bundle, of which
block, how old that block is, and what a bundle cannot show.

``ProofBundleShelf`` is the service's side: while the chain answers, a model the gate verifies gets a
bundle at the newest block the clinic pinned (``trusted_checkpoint_file``), kept in
``<data_dir>/bundles/``; when the chain cannot be reached and ``offline_bundles`` is on, the gate
admits a model only from such a bundle that verifies against the pinned hash and whose block is
younger than ``offline_bundle_max_age_s``. Anything else still raises: fail closed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.chain.bundles import CANNOT_SHOW, CheckedBundle, check_bundle
from registry.chain.client import RegistryClient
from registry.chain.deployments import load_deployment
from registry.chain.proofs import make_bundle
from registry.config import Settings
from registry.core.address import parse_address
from registry.core.bundles import ProofBundle, TrustedBlocks
from registry.core.digest import Digest, read_regular_file
from registry.core.files import atomic_write
from registry.core.policy import Policy
from registry.core.records import Verdict
from registry.core.times import human_utc
from registry.errors import (
    BundleRejected,
    ChainUnavailable,
    InvalidInput,
    RegistryError,
)
from registry.verify import verdict_maker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trust:
    """What the caller trusts: a block hash, and the registry (chain id, contract) it names."""

    block_hash: bytes
    contract: str
    chain_id: int | None


@dataclass(frozen=True)
class OfflineVerdict:
    verdict: Verdict
    checked: CheckedBundle
    age_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.verdict.to_dict(),
            "source": "proof_bundle",
            "bundle": {**self.checked.to_dict(), "age_s": round(self.age_s, 1)},
        }


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def verify_bundle(
    bundle: ProofBundle,
    digest: Digest,
    trust: Trust,
    runtime_code: bytes,
    *,
    policy: Policy | None = None,
    confirmations: int = 1,
    now: float | None = None,
) -> OfflineVerdict:
    """The verdict ``bundle`` proves for the file of ``digest``; BundleRejected when it proves
    nothing (tampered, another block, chain, contract or record)."""
    if bundle.digest != digest:
        raise BundleRejected(
            f"it is a bundle for checkpoint {bundle.digest.short}, not for this file "
            f"({digest.short})",
            bundle_digest=str(bundle.digest),
            digest=str(digest),
        )
    checked = check_bundle(
        bundle,
        trusted_hash=trust.block_hash,
        contract=trust.contract,
        runtime_code=runtime_code,
        chain_id=trust.chain_id,
    )
    policy = policy or Policy()
    age = checked.age_s(time.time() if now is None else now)
    block = checked.block_number
    where = (
        f"from a proof bundle at block {block} (0x{checked.block_hash.hex()[:12]}…, "
        f"{_age(age)} old); it cannot show a revocation after that block"
    )
    record = checked.record

    verdict = verdict_maker(digest, bundle.chain_id, bundle.contract, block, record, where=where)

    if record is None:
        result = verdict(
            False,
            "unknown",
            f"no checkpoint with digest {digest.short} is registered on chain "
            f"{bundle.chain_id} at block {block}",
        )
    elif record.revocation is not None:
        r = record.revocation
        detail = f"revoked on {human_utc(r.revoked_at)} (reason: {r.reason.label})"
        if r.replacement is not None:
            detail += f"; the registry names {r.replacement} as its replacement"
        result = verdict(False, "revoked", detail)
    elif record.registered_block + confirmations - 1 > block:
        result = verdict(
            False,
            "unconfirmed",
            f"registered in block {record.registered_block} but the policy needs "
            f"{confirmations} confirmations and the bundle is of block {block}",
        )
    elif failures := policy.failures(record) + policy.attestations_unreadable(
        "a proof bundle does not show attestations"
    ):
        result = verdict(False, "policy", "; ".join(failures), failures)
    else:
        result = verdict(
            True,
            "verified",
            f"registered by {record.registrant} on {human_utc(record.registered_at)} with "
            f"accuracy {record.accuracy_bps / 100:.2f} % (test set "
            f"{record.test_set_digest.short}, as the bundle carries it, unproven)",
        )
    return OfflineVerdict(result, checked, age)


def read_trusted_blocks(path: Path) -> TrustedBlocks:
    return TrustedBlocks.parse(read_regular_file(path), source=str(path))


def trust_for(
    settings: Settings,
    bundle: ProofBundle,
    *,
    trusted_block_hash: str | None = None,
    trusted_blocks: TrustedBlocks | None = None,
    source: str = "the trusted blocks file",
) -> Trust:
    """The trust a bundle is checked under: the hash given, or the one pinned for its block;
    the contract and chain id from the settings, the pinned file, or the chain's recorded
    deployment, never from the bundle alone."""
    if (trusted_block_hash is None) == (trusted_blocks is None):
        raise InvalidInput(
            "give exactly one of --trusted-block-hash 0x... and --trusted-checkpoint FILE: the "
            "bundle is believed only from a block hash you trust"
        )
    chain_id = settings.chain_id
    contract = settings.contract_address
    if trusted_blocks is not None:
        if chain_id is not None and chain_id != trusted_blocks.chain_id:
            raise InvalidInput(
                f"{source} pins chain {trusted_blocks.chain_id}, the settings say chain {chain_id}"
            )
        chain_id = trusted_blocks.chain_id
        if contract is None:
            contract = trusted_blocks.contract
        elif trusted_blocks.contract and parse_address(contract) != trusted_blocks.contract:
            raise InvalidInput(
                f"{source} names registry {trusted_blocks.contract}, the settings {contract}"
            )
        pinned = trusted_blocks.blocks.get(bundle.block_number)
        if pinned is None:
            newest = trusted_blocks.newest
            raise BundleRejected(
                f"its block {bundle.block_number} is not one {source} pins (newest pinned: "
                f"{newest}); make the bundle at a pinned block (registry proof --block {newest})",
                block=bundle.block_number,
            )
        block_hash = pinned
    else:
        text = str(trusted_block_hash).strip().lower()
        if len(text) != 66 or not text.startswith("0x"):
            raise InvalidInput(
                f"--trusted-block-hash {trusted_block_hash!r:.80} is not 0x and 64 hex characters",
                value=str(trusted_block_hash)[:80],
            )
        try:
            block_hash = bytes.fromhex(text[2:])
        except ValueError:
            raise InvalidInput(
                f"--trusted-block-hash {trusted_block_hash!r:.80} is not hex"
            ) from None
    if contract is None:
        deployment = load_deployment(settings.data_dir, chain_id or bundle.chain_id)
        contract = deployment.address if deployment else None
    if contract is None:
        raise InvalidInput(
            "which registry is trusted? set REGISTRY_CONTRACT_ADDRESS (or --contract), or a "
            '"contract" in the trusted blocks file: a bundle\'s own address proves nothing',
        )
    return Trust(block_hash, parse_address(contract, "contract"), chain_id)


class ProofBundleShelf:
    """The service's stored bundles, one per digest, at the newest block the clinic pinned."""

    def __init__(
        self, settings: Settings, runtime_code: bytes, clock: Callable[[], float] = time.time
    ) -> None:
        if settings.trusted_checkpoint_file is None:
            raise InvalidInput(
                "REGISTRY_OFFLINE_BUNDLES needs REGISTRY_TRUSTED_CHECKPOINT_FILE: the block hashes "
                "a stored bundle is checked against"
            )
        self.settings = settings
        self.folder = settings.data_dir / "bundles"
        self.pins_path = settings.trusted_checkpoint_file
        self.runtime_code = runtime_code
        self.max_age_s = settings.offline_bundle_max_age_s
        self.clock = clock  # wall-clock seconds, what a block's timestamp is compared with
        self._lock = threading.Lock()
        self._pins: tuple[float, TrustedBlocks] | None = None
        self._held: dict[Digest, int] = {}  # digest -> block of the bundle stored for it

    def pins(self) -> TrustedBlocks:
        """The pinned blocks, read again whenever the file changes (a clinic adds a new pin)."""
        mtime = self.pins_path.stat().st_mtime
        with self._lock:
            if self._pins is not None and self._pins[0] == mtime:
                return self._pins[1]
        pins = read_trusted_blocks(self.pins_path)
        with self._lock:
            self._pins = (mtime, pins)
        return pins

    def path(self, digest: Digest) -> Path:
        return self.folder / f"{digest.hex}.json"

    def note(self, client: RegistryClient, verdict: Verdict) -> None:
        """After an online verdict: keep a bundle of a verified model at the newest pinned block
        (once per pin), and drop the bundle of one that is not verified any more (revoked since
        its bundle's block: the service knows what the bundle cannot show). A failure here
        never changes the online verdict; it is logged."""
        digest = verdict.digest
        try:
            if not verdict.verified:
                self._held.pop(digest, None)
                self.path(digest).unlink(missing_ok=True)
                return
            newest = self.pins().newest
            if self._held.get(digest) == newest:
                return
            # Asked once per pin, whatever comes of it: not again on every verdict.
            self._held[digest] = newest
            self._store(client, digest, newest)
        except (RegistryError, OSError) as exc:
            log.warning("no proof bundle kept for %s: %s", digest.short, exc)

    def _store(self, client: RegistryClient, digest: Digest, block: int) -> None:
        path = self.path(digest)
        if path.is_file() and ProofBundle.parse(path.read_bytes(), str(path)).block_number == block:
            return  # kept by this service before a restart
        checked = make_bundle(client, digest, block)
        trust = trust_for(self.settings, checked.bundle, trusted_blocks=self.pins())
        if verify_bundle(checked.bundle, digest, trust, self.runtime_code).verdict.verified:
            atomic_write(path, checked.bundle.to_json())
        # else: registered after the pinned block, say; nothing worth keeping

    def verdict(
        self, digest: Digest, policy: Policy, down: ChainUnavailable, confirmations: int = 1
    ) -> Verdict:
        """The verdict of the stored bundle while the chain is down; ``down`` is raised again
        when there is none, it does not verify, or its block is too old (fail closed)."""
        try:
            bundle = ProofBundle.parse(read_regular_file(self.path(digest)), str(self.path(digest)))
            trust = trust_for(self.settings, bundle, trusted_blocks=self.pins())
            offline = verify_bundle(
                bundle,
                digest,
                trust,
                self.runtime_code,
                policy=policy,
                confirmations=confirmations,
                now=self.clock(),
            )
        except (RegistryError, OSError) as exc:
            log.warning("chain down and no usable proof bundle for %s: %s", digest.short, exc)
            raise down from None
        if offline.age_s > self.max_age_s:
            log.warning(
                "chain down; the proof bundle for %s is of block %d, %s old, older than %s",
                digest.short,
                offline.checked.block_number,
                _age(offline.age_s),
                _age(self.max_age_s),
            )
            raise down
        return offline.verdict


__all__ = [
    "CANNOT_SHOW",
    "OfflineVerdict",
    "ProofBundleShelf",
    "Trust",
    "trust_for",
    "verify_bundle",
]
