"""What a clinician needs beside a verdict: the model's name and intended use, whether it was
trained on stand-in data, what its accuracy was measured on, and the policy the verdict applied.

The verdict comes from the chain; these facts come from the model card this service holds (its
digest is anchored, and the store re-hashes what it reads, so the bytes are the registrant's own)
and from the checkpoint's header. Both are text a registrant wrote: they leave here as bounded
JSON strings, never as markup, and the page inserts them as text.

The stand-in flag fails safe. A model is said to be trained on real data only when its card says
so and its header does not say otherwise; a card or header that says "stand-in" wins; with
neither card nor telling header, the answer is "unknown" (null), which the page shows as a
warning, never as a clinical model.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from modelformat.header import CheckedCheckpoint
from registry.core.digest import Digest
from registry.core.policy import Policy
from registry.core.store import CheckpointStore
from registry.errors import NotFound, StoreError

log = logging.getLogger("registry.api")

# Words by which a dataset's name declares it a stand-in: the built-in demo set's name
# (training.data.builtin.BUILTIN_NAME, "... (stand-in, not medical data)") carries both, and
# the header keeps that name. A real dataset named so is flagged too: the safe side.
STAND_IN_MARKERS: Final = ("stand-in", "not medical data")
# Bounds on registrant-written text in an answer (a card may be up to 1 MiB).
MAX_NAME_CHARS: Final = 200
MAX_TEXT_CHARS: Final = 2_000
CARD_CACHE_ENTRIES: Final = 1_024


@dataclass(frozen=True)
class CardSummary:
    """What a model card says that a clinician reads before using the model."""

    name: str | None
    intended_use: str | None
    stand_in: bool | None  # the card's dataset.is_stand_in, when it is a boolean
    dataset: str | None
    test_set_size: int | None


def summarise_card(card: object) -> CardSummary:
    """The summary of a parsed card; a field of the wrong type or missing is None."""
    dataset = _object(card, "dataset")
    test = _object(_object(dataset, "splits"), "test")
    size = test.get("size")
    flag = dataset.get("is_stand_in")
    top = card if isinstance(card, dict) else {}
    return CardSummary(
        name=_text(top.get("model_name"), MAX_NAME_CHARS),
        intended_use=_text(top.get("intended_use"), MAX_TEXT_CHARS),
        stand_in=flag if isinstance(flag, bool) else None,
        dataset=_text(dataset.get("name"), MAX_NAME_CHARS),
        test_set_size=size if isinstance(size, int) and not isinstance(size, bool) else None,
    )


def _object(parent: object, key: str) -> dict[str, Any]:
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else {}


def _text(value: object, limit: int) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value if len(value) <= limit else value[: limit - 1] + "…"


def says_stand_in(dataset_name: str | None) -> bool:
    """Whether a dataset's name declares it a stand-in (see ``STAND_IN_MARKERS``)."""
    folded = (dataset_name or "").casefold()
    return any(marker in folded for marker in STAND_IN_MARKERS)


class CardSummaries:
    """Card summaries by card digest, least recently used first out.

    A card's digest names its bytes (the store re-hashes every read), so a summary never goes
    stale, whichever store held the card: one cache serves the process. Only cards found are
    kept; one not held yet is looked for again next time (a registrar may upload it).
    """

    def __init__(self, max_entries: int = CARD_CACHE_ENTRIES) -> None:
        self.max_entries = max_entries
        self._known: OrderedDict[str, CardSummary] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: CheckpointStore, card: Digest) -> CardSummary | None:
        """The summary of ``card`` if ``store`` holds it, else None (reads the store once)."""
        with self._lock:
            known = self._known.get(card.hex)
            if known is not None:
                self._known.move_to_end(card.hex)
                return known
        try:
            if not store.has(card.hex, "card"):
                return None
            summary = summarise_card(json.loads(store.get(card.hex, "card")))
        except NotFound:
            return None  # removed since has(): as if never held
        except (StoreError, ValueError) as exc:
            # The verdict does not depend on the card: answer without it, tell the operator.
            log.warning("model card %s in the store is unusable: %s", card.short, exc)
            return None
        with self._lock:
            self._known[card.hex] = summary
            while len(self._known) > self.max_entries:
                self._known.popitem(last=False)
        return summary


# One per process: a summary depends on the card's digest alone (see CardSummaries).
CARDS = CardSummaries()


def model_facts(card: CardSummary | None, header: CheckedCheckpoint | None) -> dict[str, Any]:
    """The ``model`` object of a verdict answer (``schemas.ModelFactsOut``)."""
    header_dataset = header.spec.dataset if header is not None else None
    if (card is not None and card.stand_in) or says_stand_in(header_dataset):
        stand_in: bool | None = True
    elif card is not None and card.stand_in is False and not says_stand_in(card.dataset):
        stand_in = False
    else:
        stand_in = None
    return {
        "name": card.name if card else None,
        "intended_use": card.intended_use if card else None,
        "stand_in": stand_in,
        "dataset": (card.dataset if card else None) or _text(header_dataset, MAX_NAME_CHARS),
        "test_set_size": card.test_set_size if card else None,
        "class_names": list(header.spec.class_names) if header is not None else None,
        "card_held": card is not None,
    }


def policy_facts(policy: Policy, confirmations: int) -> dict[str, Any]:
    """The clinic's policy as an answer states it (``schemas.PolicyOut``)."""
    return {
        "min_accuracy_bps": policy.min_accuracy_bps,
        "min_accuracy_percent": policy.min_accuracy_bps / 100,
        "trusted_registrants": sorted(policy.trusted_registrants),
        "confirmations": confirmations,
        "min_attestations": policy.min_attestations,
        "trusted_evaluators": list(policy.trusted_evaluators),
        "attestation_tolerance_bps": policy.attestation_tolerance_bps,
    }
