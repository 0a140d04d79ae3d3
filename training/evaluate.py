"""Test-set metrics, including the accuracy the registry anchors as an integer.

The chain stores accuracy in basis points (0..10 000). We floor, never round: 24 999 correct out
of 25 000 is 9 999.6 bps, and rounding would anchor a perfect 10 000 the model did not earn. Everything
else (per-class recall and precision, one-vs-rest AUC, confusion matrix) goes into the model card
so a clinic can see *where* a model errs, not just how often.

``compute_metrics`` is pure numpy on labels and probabilities, so it can be checked on hand-made
examples; ``evaluate_model`` runs the network and calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from torch import nn

    from modelformat.spec import ModelSpec
    from training.data import Split

BPS_SCALE = 10_000


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    support: int  # test images whose true class this is
    predicted: int  # test images predicted as this class
    recall: float | None  # None when support is 0: undefined, not 0
    precision: float | None  # None when nothing was predicted as this class
    auc: float | None  # one-vs-rest; None when the class is absent from (or is all of) the split


@dataclass(frozen=True)
class Metrics:
    n: int
    correct: int
    accuracy: float
    accuracy_bps: int
    per_class: tuple[ClassMetrics, ...]
    macro_auc_ovr: float | None
    auc_skipped: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]  # rows: true class, columns: predicted class
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "accuracy_bps": self.accuracy_bps,
            "accuracy_bps_rounding": "floor",
            "macro_auc_ovr": self.macro_auc_ovr,
            "auc_skipped_classes": list(self.auc_skipped),
            "per_class": [
                {
                    "name": c.name,
                    "support": c.support,
                    "predicted": c.predicted,
                    "recall": c.recall,
                    "precision": c.precision,
                    "auc_ovr": c.auc,
                }
                for c in self.per_class
            ],
            "confusion_matrix": [list(row) for row in self.confusion],
            "confusion_matrix_axes": "rows: true class, columns: predicted class",
            "notes": list(self.notes),
        }


def accuracy_bps(correct: int, total: int) -> int:
    """Accuracy in basis points, floored with integer arithmetic (no float rounding at all)."""
    if total <= 0 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total and total > 0, got {correct}/{total}")
    return correct * BPS_SCALE // total


def roc_auc(positive: npt.NDArray[np.bool_], scores: npt.NDArray[np.floating[Any]]) -> float:
    """Area under the ROC curve via the Mann-Whitney rank statistic, ties given average ranks.

    Equals the probability that a random positive scores above a random negative (ties count
    half). Raises ``ValueError`` when either class is absent: the AUC is then undefined.
    """
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs at least one positive and one negative example")
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    # 1-based average rank of each run of tied scores.
    average = first + (counts + 1) / 2.0
    ranks = np.empty(scores.size, dtype=np.float64)
    ranks[order] = np.repeat(average, counts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def compute_metrics(
    labels: npt.NDArray[np.integer[Any]],
    probabilities: npt.NDArray[np.floating[Any]],
    class_names: Sequence[str],
) -> Metrics:
    """Metrics of predicted ``probabilities`` (N, K) against true ``labels`` (N,).

    The prediction is the arg-max (lowest class index on ties).
    """
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    k = len(class_names)
    n = labels.shape[0]
    if probabilities.shape != (n, k):
        raise ValueError(f"probabilities must be ({n}, {k}), got {probabilities.shape}")
    if n == 0:
        raise ValueError("cannot evaluate on an empty split")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must be in 0..{k - 1}")
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    correct = int(np.trace(confusion))

    notes: list[str] = []
    per_class: list[ClassMetrics] = []
    aucs: list[float] = []
    skipped: list[str] = []
    for c, name in enumerate(class_names):
        support = int(confusion[c].sum())
        n_predicted = int(confusion[:, c].sum())
        hits = int(confusion[c, c])
        auc: float | None = None
        if 0 < support < n:
            auc = roc_auc(labels == c, probabilities[:, c])
            aucs.append(auc)
        else:
            skipped.append(name)
        if support == 0:
            notes.append(
                f"class {name!r} has no test images: its recall and AUC are undefined "
                "and it is left out of the macro AUC"
            )
        if n_predicted == 0:
            notes.append(f"no test image was predicted as {name!r}: its precision is undefined")
        per_class.append(
            ClassMetrics(
                name=name,
                support=support,
                predicted=n_predicted,
                recall=hits / support if support else None,
                precision=hits / n_predicted if n_predicted else None,
                auc=auc,
            )
        )
    if skipped and len(skipped) == k:
        notes.append("the test split holds a single class: no AUC can be computed")
    return Metrics(
        n=n,
        correct=correct,
        accuracy=correct / n,
        accuracy_bps=accuracy_bps(correct, n),
        per_class=tuple(per_class),
        macro_auc_ovr=float(np.mean(aucs)) if aucs else None,
        auc_skipped=tuple(skipped),
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
        notes=tuple(notes),
    )


def evaluate_model(
    model: nn.Module, split: Split, spec: ModelSpec, batch_size: int = 2048
) -> Metrics:
    """Run ``model`` on ``split`` (normalised as ``spec`` says) and compute its metrics."""
    from training.model import predict_proba  # deferred: keeps compute_metrics torch-free

    probabilities = predict_proba(model, split.images, spec, batch_size).double().numpy()
    return compute_metrics(split.labels.numpy(), probabilities, spec.class_names)
