"""Response and request models: what the OpenAPI document promises, field by field.

They mirror the ``to_dict()`` forms of ``registry.core.records`` and ``registry.gate`` (digests as
``sha256:<hex>``, times as ISO-8601 UTC), so a route returns those dictionaries and FastAPI checks
them against these models on the way out.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable name, e.g. `not_verified`")
    message: str = Field(description="what happened, the offending value, what to do next")
    details: dict[str, Any] = Field(description="the offending values, by name")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class RevocationOut(BaseModel):
    revoked_at: str
    block_number: int
    reason: str = Field(description="e.g. `safety-issue`, `superseded`")
    reason_code: int
    replacement: str | None = Field(description="digest of the checkpoint to use instead")
    revoker: str | None
    tx_hash: str | None


class RecordOut(BaseModel):
    digest: str
    registrant: str
    registered_at: str
    registered_block: int
    registration_tx: str | None
    accuracy_bps: int = Field(description="basis points: 9731 = 97.31 %")
    accuracy_percent: float
    test_set_digest: str = Field(description="the test split the accuracy was measured on")
    card_digest: str
    parent: str | None
    valid: bool
    revocation: RevocationOut | None


class ModelFactsOut(BaseModel):
    """What the model's card and header say: text a registrant wrote, to be shown as text."""

    name: str | None = Field(description="the card's `model_name`; null without the card")
    intended_use: str | None = Field(description="the card's `intended_use`; null without it")
    stand_in: bool | None = Field(
        description="true: trained and tested on stand-in data, not medical data (the card's "
        "`dataset.is_stand_in`, or a dataset name that says so); false: the card says the data "
        "are real; null: not known (this service does not hold the card)"
    )
    dataset: str | None = Field(description="the data's name: the card's, else the header's")
    test_set_size: int | None = Field(
        description="images in the test split the anchored accuracy was measured on"
    )
    class_names: list[str] | None = Field(description="the classes, from the checkpoint header")
    card_held: bool = Field(description="whether this service holds the anchored model card")


class PolicyOut(BaseModel):
    """The clinic's policy: what a registered, unrevoked model must also meet to be verified."""

    min_accuracy_bps: int = Field(
        description="minimum anchored accuracy, basis points; 0: no minimum is enforced"
    )
    min_accuracy_percent: float
    trusted_registrants: list[str] = Field(
        description="lowercase addresses whose registrations are accepted; empty: any registrar"
    )
    confirmations: int = Field(description="blocks, its own included, before a record counts")
    min_attestations: int = Field(
        description="trusted evaluators that must have attested the model; 0: none required"
    )
    trusted_evaluators: list[str] = Field(
        description="lowercase addresses whose attestations count"
    )
    attestation_tolerance_bps: int = Field(
        description="an attestation on the anchored test set counts only this close to the claim"
    )


class BatchFactsOut(BaseModel):
    root: str = Field(description="the batch's Merkle root, 0x and 64 hex digits")
    registrant: str
    registered_at: str
    registered_block: int
    count: int = Field(description="checkpoints in the batch")
    manifest_digest: str = Field(
        description="SHA-256 of the batch's manifest (GET /batches/manifests/{digest})"
    )
    registration_tx: str | None
    revoked: bool
    revocation_reason: str | None


class BatchPlaceOut(BaseModel):
    root: str = Field(description="the root of the batch the checkpoint was judged through")
    position: int = Field(description="the checkpoint's index among the manifest's values")
    batch: BatchFactsOut | None = Field(
        description="the batch as the chain knows it; null if unknown"
    )


class VerdictOut(BaseModel):
    verified: bool
    reason: Literal["verified", "unknown", "revoked", "policy", "unconfirmed"]
    detail: str
    digest: str
    chain_id: int
    contract: str
    checked_block: int
    policy_failures: list[str]
    record: RecordOut | None
    batch: BatchPlaceOut | None = Field(
        default=None, description="for a checkpoint anchored in a batch: which one, and where"
    )
    stored: bool = Field(
        description="whether this service holds the checkpoint's bytes (needed for /predict)"
    )
    model: ModelFactsOut = Field(description="name, intended use, stand-in data, classes")
    policy: PolicyOut = Field(description="the policy this verdict applied")


class AuditAnchorOut(BaseModel):
    address: str | None = Field(description="the account that anchors the audit log; null: none")
    anchored_size: int | None = Field(description="entries covered by the latest anchor")
    anchored_block: int | None = Field(description="the block of the latest anchor")
    error: str | None = Field(description="why the log is not anchored, or the last failure")


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]
    chain_reachable: bool
    endpoint: str
    chain_id: int | None
    contract: str | None
    latest_block: int | None
    gate_open: bool = Field(
        description="true only when the chain id and the contract's code check out"
    )
    error: ErrorDetail | None = None
    audit_anchor: AuditAnchorOut | None = Field(
        default=None, description="the audit log's anchoring on chain"
    )


class ModelSummary(RecordOut):
    stored: bool


class ModelListOut(BaseModel):
    count: int
    models: list[ModelSummary]


class AttestationOut(BaseModel):
    """An evaluator's own measurement of the checkpoint, anchored on chain."""

    digest: str
    evaluator: str = Field(description="the evaluator's address (never the model's registrant)")
    accuracy_bps: int = Field(description="what the evaluator measured, basis points")
    accuracy_percent: float
    test_set_digest: str = Field(description="the test split the evaluator measured on")
    test_set: Literal["anchored", "own"] = Field(
        description="`anchored`: the test set of the registrant's claim; `own`: another one"
    )
    report_digest: str | None = Field(description="SHA-256 of the evaluation report; null: none")
    attested_at: str
    attested_block: int
    tx_hash: str | None
    withdrawn: bool = Field(description="true: the evaluator withdrew it (or replaced it)")
    withdrawn_at: str | None


class ModelDetailOut(BaseModel):
    record: RecordOut
    stored: bool
    lineage: list[RecordOut] = Field(description="the checkpoint first, then its ancestors")
    children: list[str] = Field(description="digests registered with this one as parent")
    card: dict[str, Any] | None = Field(description="the model card, when this service holds it")
    attestations: list[AttestationOut] = Field(
        description="every evaluator attestation of the checkpoint, oldest first, withdrawn "
        "ones included and marked"
    )


class RegistrationOut(BaseModel):
    tx_hash: str | None
    block_number: int
    gas_used: int | None
    already_registered: bool
    record: RecordOut


class RevokeIn(BaseModel):
    reason: str | int = Field(
        description="superseded, safety-issue, performance-degradation, data-problem, "
        "security-compromise, regulatory, registered-in-error, other (or the code)",
        examples=["safety-issue"],
    )
    replacement: str | None = Field(
        default=None, description="digest of a registered checkpoint to use instead"
    )


class PredictionItem(BaseModel):
    class_index: int
    label: str
    probabilities: list[float]


class ProvenanceOut(BaseModel):
    model_digest: str
    chain_id: int
    contract: str
    registrant: str
    registration_tx: str | None
    registration_block: int
    validity_confirmed_at_block: int = Field(
        description="the block at which the model's validity was last read from the chain"
    )
    accuracy_bps: int
    test_set_digest: str
    card_digest: str
    parent: str | None
    batch: BatchPlaceOut | None = Field(
        default=None, description="for a model anchored in a batch: its root and position"
    )


class ReceiptOut(BaseModel):
    log_index: int = Field(description="the answer's audit entry, counted from the log's first")
    leaf_hash: str = Field(description="SHA-256(0x00 || the entry's line), 64 hex (RFC 6962)")
    model_digest: str
    verdict_block: int = Field(description="the block the model's validity was read at")
    service: str | None = Field(description="the address that anchors this service's log")
    chain_id: int
    contract: str


class PredictionOut(BaseModel):
    predictions: list[PredictionItem]
    class_names: list[str]
    provenance: ProvenanceOut
    receipt: ReceiptOut | None = Field(
        default=None,
        description="where this answer is recorded in the audit log: verify it with "
        "`registry receipt verify` and GET /audit/proof/{log_index}",
    )
