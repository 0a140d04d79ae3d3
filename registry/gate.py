"""The inference gate: verified bytes in, a loaded model out; everything else is refused.

A model enters only from bytes whose SHA-256 matches a valid on-chain record (and the clinic's
policy), after the safetensors header has been checked against the architecture it names, and it
is deserialised from *those same bytes* (an immutable copy taken before hashing). While cached, its
validity is re-read from the chain at most ``validity_ttl_s`` seconds apart, so a revocation stops
predictions within that bound plus one request. Chain trouble raises: no answer, no inference.

This is the only registry module that imports torch (through ``training``), and only lazily.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelformat.header import CheckedCheckpoint, inspect_checkpoint
from registry.chain.client import RegistryClient
from registry.core.batch_proof import BatchProof
from registry.core.digest import Digest, digest_bytes
from registry.core.policy import Policy
from registry.core.records import Verdict
from registry.errors import ChainUnavailable, InvalidInput, NotVerified
from registry.offline import ProofBundleShelf
from registry.verify import verify_digest, verify_located


@dataclass(frozen=True)
class LoadedModel:
    digest: Digest
    spec: Any  # modelformat.spec.ModelSpec
    network: Any  # torch.nn.Module, evaluation mode, CPU
    verdict: Verdict  # the verdict that admitted it


@dataclass(frozen=True)
class Prediction:
    classes: list[int]
    labels: list[str]
    probabilities: list[list[float]]
    provenance: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "predictions": [
                {"class_index": c, "label": label, "probabilities": p}
                for c, label, p in zip(self.classes, self.labels, self.probabilities, strict=True)
            ],
            "provenance": self.provenance,
        }


def refusal(verdict: Verdict) -> NotVerified:
    return NotVerified(
        f"checkpoint {verdict.digest.short} may not be used: {verdict.reason}: {verdict.detail}",
        verdict,
    )


MAX_CACHED_VERDICTS = 4096
# A digest's inclusion proofs in the batches a service knows (registry.index.batches).
Locate = Callable[[Digest], Iterable[BatchProof]]


class Gate:
    def __init__(
        self,
        client: RegistryClient,
        policy: Policy | None = None,
        *,
        validity_ttl_s: float = 1.0,
        max_models: int = 8,
        locate: Locate | None = None,
        require: Callable[[Verdict], Verdict] | None = None,
        offline: ProofBundleShelf | None = None,
    ) -> None:
        """``locate`` gives a digest's inclusion proofs from the batch manifests this service
        holds, so a batched checkpoint (no record of its own) is judged through its batch.
        ``require`` is a last condition on a verified verdict before a model is loaded (the
        model-signing bundle of REGISTRY_REQUIRE_OMS_SIGNATURE): the verdict back, or a refusal.
        ``offline`` (REGISTRY_OFFLINE_BUNDLES) keeps a proof bundle of each model verified here
        and answers from it, and only from it, while the chain cannot be reached."""
        self.client = client
        self.offline = offline
        self.locate = locate
        self.require = require
        self.policy = policy or Policy()
        self.validity_ttl_s = validity_ttl_s
        self.max_models = max_models
        self._lock = threading.Lock()
        self._models: OrderedDict[Digest, LoadedModel] = OrderedDict()
        # digest -> (positive verdict, monotonic time it was read): the one validity cache
        self._verdicts: OrderedDict[Digest, tuple[Verdict, float]] = OrderedDict()

    def check(self, digest: Digest) -> Verdict:
        """A fresh verdict from the chain (raises when the chain cannot answer, unless a stored
        proof bundle answers for it: ``offline``)."""
        if self.offline is None:
            return self._check_online(digest)
        try:
            verdict = self._check_online(digest)
        except ChainUnavailable as down:  # wrong chain or contract: never a bundle's business
            return self.offline.verdict(digest, self.policy, down, self.client.confirmations)
        self.offline.note(self.client, verdict)
        return verdict

    def _check_online(self, digest: Digest) -> Verdict:
        if self.locate is None:
            return verify_digest(self.client, digest, self.policy)
        locate = self.locate

        def proofs() -> Iterator[BatchProof]:  # asked only for a digest without its own record
            yield from locate(digest)

        return verify_located(self.client, digest, proofs(), self.policy)

    def fresh_verdict(self, digest: Digest) -> Verdict | None:
        """The "verified" verdict ``verdict`` would reuse now, or None; never asks the chain (so
        an event loop may call it)."""
        with self._lock:
            cached = self._verdicts.get(digest)
        if cached is not None and time.monotonic() - cached[1] < self.validity_ttl_s:
            return cached[0]
        return None

    def verdict(self, digest: Digest) -> Verdict:
        """A verdict with the gate's own bounded staleness: a "verified" answer is reused for up to
        ``validity_ttl_s``; any other answer is read fresh from the chain every time."""
        now = time.monotonic()
        cached = self.fresh_verdict(digest)
        if cached is not None:
            return cached
        verdict = self.check(digest)
        with self._lock:
            if verdict.verified:
                self._verdicts[digest] = (verdict, now)
                self._verdicts.move_to_end(digest)
                while len(self._verdicts) > MAX_CACHED_VERDICTS:
                    self._verdicts.popitem(last=False)
            else:
                self._verdicts.pop(digest, None)
        return verdict

    def admit(self, data: bytes | bytearray | memoryview) -> LoadedModel:
        """Verify ``data`` and load the network from exactly these bytes."""
        frozen = bytes(data)  # a caller's buffer could change between hashing and loading
        digest = digest_bytes(frozen)
        if self.loaded(digest):
            return self.ensure_valid(digest)
        verdict = self._valid_verdict(digest)
        if self.require is not None:
            verdict = self.require(verdict)
            if not verdict.verified:
                raise refusal(verdict)
        checked = inspect_checkpoint(frozen)  # torch-free, before training is even imported

        from training.checkpoint import load_checkpoint_bytes

        network, spec = load_checkpoint_bytes(frozen, checked)
        model = LoadedModel(digest, spec, network, verdict)
        with self._lock:
            self._models[digest] = model
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
        return model

    def forget(self, digest: Digest) -> None:
        """Drop a loaded model (e.g. one this process just revoked); the next use re-admits it."""
        with self._lock:
            self._models.pop(digest, None)
            self._verdicts.pop(digest, None)

    def loaded(self, digest: Digest) -> bool:
        with self._lock:
            return digest in self._models

    def ensure_valid(self, digest: Digest) -> LoadedModel:
        """The cached model, its validity re-read from the chain if older than the TTL."""
        return self._valid_model(digest)[0]

    def _valid_model(self, digest: Digest) -> tuple[LoadedModel, Verdict]:
        with self._lock:
            model = self._models.get(digest)
            if model is not None:
                self._models.move_to_end(digest)
        if model is None:
            raise KeyError(digest)
        return model, self._valid_verdict(digest)

    def _valid_verdict(self, digest: Digest) -> Verdict:
        verdict = self.verdict(digest)
        if not verdict.verified:
            with self._lock:
                self._models.pop(digest, None)
            raise refusal(verdict)
        return verdict

    def predict(self, digest: Digest, pixels: np.ndarray) -> Prediction:
        """Class probabilities for uint8 NCHW ``pixels`` with a currently valid model."""
        model, verdict = self._valid_model(digest)
        spec = model.spec
        expected = (spec.in_channels, spec.input_size, spec.input_size)
        if pixels.ndim != 4 or pixels.shape[1:] != expected or pixels.dtype != np.uint8:
            raise InvalidInput(
                f"images must be uint8 of shape (N, {', '.join(map(str, expected))}); got "
                f"{pixels.dtype} {tuple(pixels.shape)}"
            )
        import torch

        from training.model import predict_proba

        probabilities = predict_proba(model.network, torch.from_numpy(pixels), spec)
        classes = probabilities.argmax(dim=1).tolist()
        return Prediction(
            classes=classes,
            labels=[spec.class_names[c] for c in classes],
            probabilities=[[round(float(p), 6) for p in row] for row in probabilities.tolist()],
            provenance=provenance(verdict),
        )


def provenance(verdict: Verdict) -> dict[str, Any]:
    """What a compliance officer needs to know about the model behind an answer."""
    record = verdict.record
    assert record is not None  # a verified verdict always carries its record
    return {
        "model_digest": str(verdict.digest),
        "chain_id": verdict.chain_id,
        "contract": verdict.contract,
        "registrant": record.registrant,
        "registration_tx": record.registration_tx,
        "registration_block": record.registered_block,
        "validity_confirmed_at_block": verdict.checked_block,
        "accuracy_bps": record.accuracy_bps,
        "test_set_digest": str(record.test_set_digest),
        "card_digest": str(record.card_digest),
        "parent": str(record.parent) if record.parent else None,
        "batch": verdict.batch,  # root and position, for a checkpoint anchored in a batch
    }


class CheckedDigests:
    """``inspect_checkpoint`` remembered by digest, so a file verified again is not parsed again.

    The check is a pure function of the bytes and the SHA-256 names the bytes, so a digest that
    passed once passes for good. Only passes are kept (a refusal is re-derived, and re-reported,
    each time), at most ``max_entries`` of them, least recently used first out.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._passed: OrderedDict[Digest, CheckedCheckpoint] = OrderedDict()
        self._lock = threading.Lock()

    def passed(self, digest: Digest) -> CheckedCheckpoint | None:
        """What the check found for ``digest``'s bytes, if they passed it; never parses."""
        with self._lock:
            checked = self._passed.get(digest)
            if checked is not None:
                self._passed.move_to_end(digest)
            return checked

    def inspect(self, data: bytes, digest: Digest) -> CheckedCheckpoint:
        """``inspect_checkpoint(data)``, where ``digest`` must be ``data``'s SHA-256."""
        checked = self.passed(digest)
        if checked is None:
            checked = inspect_checkpoint(data)
            with self._lock:
                self._passed[digest] = checked
                while len(self._passed) > self.max_entries:
                    self._passed.popitem(last=False)
        return checked
