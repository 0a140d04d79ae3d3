"""The service anchors its audit log's Merkle root on chain, every interval and at a clean shutdown.

Why a background thread: an anchor is a transaction (seconds on a real chain) and must never hold
up a prediction. Every ``REGISTRY_AUDIT_ANCHOR_INTERVAL_S`` (0: only at shutdown) each worker
tries the anchoring lock (``AuditTree.exclusive``, an OS lock beside the log); the one that gets
it catches the tree up with the file (the lines every worker wrote) and, when the log grew past
what the chain holds for this key, sends ``anchorAuditLog(size, root)``. A worker that finds the
lock taken skips its turn: the holder anchors for all of them.

The key: ``REGISTRY_AUDIT_ANCHOR_PRIVATE_KEY``, else the key the service signs with
(``REGISTRY_PRIVATE_KEY`` or its keystore, which is the chain client's account). With neither the
log is not anchored: said once in the service log at start-up and in ``/health``
(``audit_anchor.error``). A failed anchor (chain down, out of gas money) is logged and tried again
at the next interval; ``/health`` shows the last problem until an anchor succeeds.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from eth_account.signers.local import LocalAccount
from fastapi import Request

from registry.api.deps import Services
from registry.api.disclosure import public_error
from registry.chain.audit_anchor import AuditAnchor, AuditAnchors
from registry.chain.keys import account_from_hex, load_account
from registry.core.audit import last_appended
from registry.core.audit_tree import AuditTree
from registry.core.digest import errno_name
from registry.core.merkle_log import leaf_hash
from registry.errors import RegistryError

log = logging.getLogger("registry.api")

NO_KEY = (
    "no anchoring key: set REGISTRY_AUDIT_ANCHOR_PRIVATE_KEY, or give the service a signing key "
    "(REGISTRY_PRIVATE_KEY or REGISTRY_KEYSTORE)"
)


class AuditAnchoring:
    """The anchoring of one service's audit log: its key, its thread, what /health says."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.tree = AuditTree(services.audit.path)
        self.interval_s = services.settings.audit_anchor_interval_s
        self.account = self._account()
        self.problem: str | None = None if self.account is not None else NO_KEY
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.account is None:
            log.warning("the audit log is not anchored on chain: %s", NO_KEY)
        else:
            log.info("anchoring the audit log on chain as %s", self.account.address)

    def _account(self) -> LocalAccount | None:
        settings = self.services.settings
        if settings.audit_anchor_private_key is not None:
            return account_from_hex(
                settings.audit_anchor_private_key.get_secret_value(),
                "REGISTRY_AUDIT_ANCHOR_PRIVATE_KEY",
            )
        client = self.services.known_client
        if client is not None and client.account is not None:
            return client.account  # the service's own key, already loaded by the client
        return load_account(settings)

    @property
    def address(self) -> str | None:
        """The anchoring address a receipt names (None: this service does not anchor)."""
        return self.account.address if self.account is not None else None

    def start(self) -> AuditAnchoring:
        if self.account is not None and self.interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="audit-anchor", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, then anchor what the log gained since (a clean shutdown's anchor;
        waits for another worker's anchor to finish rather than skip)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.account is not None:
            self._guarded(wait=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._guarded(wait=False)

    def _guarded(self, *, wait: bool) -> None:
        """``anchor_once`` where nobody waits for it: a bug is logged with its traceback, and
        neither the next interval nor the rest of a shutdown (the audit log's flush) is lost."""
        try:
            self.anchor_once(wait=wait)
        except Exception:
            log.exception("anchoring the audit log failed unexpectedly")
            self.problem = (
                "the last anchoring failed unexpectedly; the operator finds the cause in the "
                "service log"
            )

    def anchor_once(self, *, wait: bool = False) -> AuditAnchor | None:
        """Catch the tree up and anchor it if the log grew; the anchor made, or None (nothing
        new, another worker holds the lock, no key, or a failure: logged, kept for /health)."""
        if self.account is None:
            return None
        try:
            with self.tree.exclusive(wait=wait) as held:
                if not held:
                    return None
                return self._anchor_locked()
        except RegistryError as exc:
            log.warning("audit log not anchored this time (tried again later): %s", exc)
            self.problem = f"the last anchoring failed: {public_error(exc)['message']}"
        except OSError as exc:  # the log's files or the tree's; /health names no path
            log.warning("audit log not anchored this time (tried again later): %s", exc)
            self.problem = (
                f"the last anchoring failed: reading the audit log's files failed "
                f"({errno_name(exc) or 'an OS error'}); the operator finds the cause in the "
                "service log"
            )
        return None

    def _anchor_locked(self) -> AuditAnchor | None:
        assert self.account is not None
        anchors = AuditAnchors(self.services.client(), self.account)
        state = self.tree.catch_up()
        latest, _ = anchors.latest(self.account.address)
        if latest is not None and latest.size > state.size:
            raise RegistryError(
                f"the chain holds an anchor of {latest.size} entries from "
                f"{self.account.address}, but this log has {state.size}: another log is "
                "anchored with this key; give each service its own anchoring key",
                address=self.account.address,
                anchored_size=latest.size,
                size=state.size,
            )
        if latest is not None and latest.size == state.size:
            self._remember(latest)
            return None  # nothing new since the last anchor
        anchor = anchors.anchor(state.size, state.root)
        self._remember(anchor)
        log.info(
            "anchored the audit log: %d entries in block %d", anchor.size, anchor.anchored_block
        )
        return anchor

    def _remember(self, anchor: AuditAnchor) -> None:
        known = self.tree.state()
        if known is None or known.anchor is None or known.anchor.get("size") != anchor.size:
            self.tree.record_anchor(anchor.to_dict())
        self.problem = None

    def status(self) -> dict[str, Any]:
        """What /health says: the address, the last anchored size and block (any worker's), or
        why the log is not anchored."""
        state = self.tree.state()
        anchor = state.anchor if state is not None else None
        return {
            "address": self.address,
            "anchored_size": anchor["size"] if anchor else None,
            "anchored_block": anchor["anchored_block"] if anchor else None,
            "error": self.problem,
        }

    def receipt(self, provenance: dict[str, Any]) -> dict[str, Any] | None:
        """The receipt of the entry this request's context appended last (its predict entry):
        where it sits in the log and what it says, for ``registry receipt verify``. None when
        the entry's index cannot be told (a sealed file is missing beside the log)."""
        appended = last_appended()
        if appended is None or appended.index is None:
            return None
        return {
            "log_index": appended.index,
            "leaf_hash": leaf_hash(appended.line).hex(),
            "model_digest": provenance["model_digest"],
            "verdict_block": provenance["validity_confirmed_at_block"],
            "service": self.address,
            "chain_id": provenance["chain_id"],
            "contract": provenance["contract"],
        }


def get_anchoring(request: Request) -> AuditAnchoring:
    anchoring: AuditAnchoring = request.app.state.anchoring
    return anchoring
