"""Checkpoint bytes + chain → Verdict: the only place a hash meets the chain.

"No" is data (``Verdict(verified=False, reason=...)``); "can't tell" is an exception raised by the
client (chain unavailable, wrong chain, wrong contract), and every caller treats it as "no".
"""

from __future__ import annotations

from registry.chain.client import RegistryClient
from registry.core.digest import Digest
from registry.core.policy import Policy
from registry.core.records import Verdict
from registry.core.times import human_utc


def verify_digest(client: RegistryClient, digest: Digest, policy: Policy | None = None) -> Verdict:
    policy = policy or Policy()
    identity = client.check_identity()
    record, block = client.lookup(digest)

    def verdict(
        verified: bool, reason: str, detail: str, failures: tuple[str, ...] = ()
    ) -> Verdict:
        return Verdict(
            verified=verified,
            reason=reason,  # type: ignore[arg-type]
            digest=digest,
            chain_id=identity.chain_id,
            contract=identity.address,
            checked_block=block,
            record=record,
            detail=detail,
            policy_failures=failures,
        )

    if record is None:
        return verdict(
            False,
            "unknown",
            f"no checkpoint with digest {digest.short} is registered on chain {identity.chain_id}; "
            "the file may have been modified, or was never released",
        )
    if record.revocation is not None:
        r = record.revocation
        detail = f"revoked on {human_utc(r.revoked_at)} (reason: {r.reason.label})"
        if r.replacement is not None:
            detail += f"; the registry names {r.replacement} as its replacement"
        return verdict(False, "revoked", detail)
    confirmed_at = record.registered_block + client.confirmations - 1
    if confirmed_at > block:
        return verdict(
            False,
            "unconfirmed",
            f"registered in block {record.registered_block} but the policy needs "
            f"{client.confirmations} confirmations (at block {confirmed_at}; chain is at {block})",
        )
    failures = policy.failures(record)
    if failures:
        return verdict(False, "policy", "; ".join(failures), failures)
    return verdict(
        True,
        "verified",
        f"registered by {record.registrant} on {human_utc(record.registered_at)} with accuracy "
        f"{record.accuracy_bps / 100:.2f} % on test set {record.test_set_digest.short}",
    )
