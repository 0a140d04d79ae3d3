"""``registry evaluate``: anyone can check an anchored accuracy claim by re-running it.

The chain says who anchored which checkpoint bytes, the accuracy they claimed (basis points,
floored) and the digest of the test split it was measured on. This command re-runs that claim:
it checks the checkpoint through the one format check, reads its record by the file's SHA-256,
loads the test split of ``--data`` with the trainer's own loaders, hashes it in the trainer's
canonical layout and, only if that digest is the anchored one, compares the accuracy the
trainer's own evaluation measures with the claim. Nothing here re-implements the network, the
loaders, the digest or the metric: a claim is checked by the code that made it.

Answers (exit code): ``reproduced`` (0) when ``|measured - claimed| <= --tolerance-bps``;
``not_reproduced`` (1); ``different_test_set`` (1) when the data is not what the claim was
measured on, where the accuracy measured here is shown as information, never as a verdict;
``unregistered`` (1). A revoked checkpoint is still evaluated and said to be revoked. Bad input
(a checkpoint refused by the format check, unreadable or malformed data, data of another shape,
channel or class count than the checkpoint's header) is exit 2.

With ``--attest`` the measurement becomes an evaluator attestation (``registry attest``): the
accuracy measured, on the test split of ``--data`` (the anchored test set, or the evaluator's
own), and with ``--report-out FILE`` the SHA-256 of the report written there, which is the
evaluate JSON exactly as ``--json`` prints it. What the contract would refuse (no evaluator role,
a revoked checkpoint, the registrant's own, a second attestation) is refused before measuring.

Determinism. The trainer measures the anchored accuracy on the CPU in float32 (its final model
is a CPU model, evaluated in batches of ``TrainConfig.eval_batch_size``); this command does the
same by default, so on the CPU the same bytes and the same data give the same count of correct
answers and the default tolerance is 0. On CUDA two things can change a prediction whose two
best scores nearly tie: TF32 (on by default for cuDNN convolutions since Ampere; it keeps a
10-bit mantissa: emulated on the CPU for the built-in set's model, it moved logits by up to
0.01) and the kernels cuDNN picks (another summation order, float32 rounding: about 1e-6
relative; with ``benchmark`` on, the pick can change from run to run). Evaluation here turns
TF32 off and asks cuDNN for deterministic kernels without benchmarking, which leaves only the
summation order; the default tolerance on CUDA is ``CUDA_TOLERANCE_BPS`` or one test image's
worth (``ceil(10000 / N)`` bps), whichever is larger.

Like ``train`` and ``serve``, the command imports torch and the trainer only once it runs, after
checking that the install has them (the ``[train]`` extra), so the base install lists it in
``--help`` and names the extra it lacks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from modelformat.header import inspect_checkpoint
from registry.cli.output import (
    EXIT_FAILED,
    EXIT_OK,
    AddCommand,
    Output,
    client_for,
    writer_for,
)
from registry.cli.runtime import require_extra
from registry.core.digest import Digest, digest_bytes, errno_name, read_regular_file
from registry.core.records import MAX_ACCURACY_BPS, ModelRecord
from registry.errors import InvalidInput

if TYPE_CHECKING:
    import torch

    from modelformat.spec import ModelSpec
    from registry.chain.client import RegistryClient
    from training.data import Dataset

# On CUDA, with TF32 off, only summation order separates a GPU run from the CPU's: it flips
# just the predictions whose two best scores agree to about 1e-6. 10 bps (0.1 %) covers that
# with a wide margin on any test set large enough for 10 bps to be more than one image.
CUDA_TOLERANCE_BPS = 10

Outcome = Literal["reproduced", "not_reproduced", "different_test_set", "unregistered"]
# The modules the command runs on: torch and safetensors to rebuild and run the network, numpy
# for the digest and the metric; PIL (image folders) is imported by the loader when it needs it.
_STACK = ("torch", "numpy", "safetensors")


@dataclass(frozen=True)
class Measurement:
    """What the trainer's own evaluation found on the test split of ``--data``."""

    test_set_digest: Digest
    n: int
    correct: int
    accuracy_bps: int
    device: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_set_digest": str(self.test_set_digest),
            "n": self.n,
            "correct": self.correct,
            "accuracy_bps": self.accuracy_bps,
            "device": self.device,
        }


@dataclass(frozen=True)
class Reevaluation:
    """One re-run of an anchored claim; ``outcome`` is the verdict, the rest its evidence."""

    file: Path
    digest: Digest
    chain_id: int
    outcome: Outcome
    record: ModelRecord | None = None
    data: Path | None = None
    data_format: str | None = None  # how --data was read: idx, npz or folder
    measured: Measurement | None = None
    tolerance_bps: int | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.outcome == "reproduced" else EXIT_FAILED

    @property
    def difference_bps(self) -> int | None:
        """measured - claimed, only where the two were measured on the same test set."""
        if self.outcome not in ("reproduced", "not_reproduced"):
            return None
        assert self.record is not None and self.measured is not None
        return self.measured.accuracy_bps - self.record.accuracy_bps

    def to_dict(self) -> dict[str, Any]:
        record = self.record
        return {
            "file": str(self.file),
            "digest": str(self.digest),
            "chain_id": self.chain_id,
            "outcome": self.outcome,
            "reproduced": self.outcome == "reproduced",
            "registered": record is not None,
            "revoked": None if record is None else not record.valid,
            "record": None if record is None else record.to_dict(),
            "claim": None
            if record is None
            else {
                "accuracy_bps": record.accuracy_bps,
                "test_set_digest": str(record.test_set_digest),
            },
            "data": None if self.data is None else str(self.data),
            "data_format": self.data_format,
            "measured": None if self.measured is None else self.measured.to_dict(),
            "same_test_set": None
            if self.measured is None or record is None
            else self.measured.test_set_digest == record.test_set_digest,
            "difference_bps": self.difference_bps,
            "tolerance_bps": self.tolerance_bps,
        }

    def explain(self) -> str:
        """The human answer: the verdict first, then the evidence, then a revocation."""
        name = str(self.file)
        record, measured = self.record, self.measured
        if record is None:
            return (
                f"NOT REGISTERED {name}: {self.digest} has no record on chain {self.chain_id}, "
                "so there is no claim to check"
            )
        assert measured is not None and self.data is not None
        claimed = _bps(record.accuracy_bps)
        found = _bps(measured.accuracy_bps)
        if self.outcome == "different_test_set":
            line = (
                f"DIFFERENT TEST SET {name}: the claim was not made on this data. The accuracy "
                f"was anchored on test set {record.test_set_digest}; the test split of "
                f"{self.data} ({measured.n} images) is {measured.test_set_digest}. On this "
                f"data the model scores {found}: information only, not a check of the claim"
            )
            if self.data_format == "folder":
                line += (
                    "\n  an image folder without train/test sub-folders is split by --seed: "
                    "give the seed the model was trained with (its card's training.seed)"
                )
        else:
            verdict = "REPRODUCED" if self.outcome == "reproduced" else "NOT REPRODUCED"
            line = (
                f"{verdict} {name}: claimed {claimed}, measured {found} "
                f"({measured.correct}/{measured.n} correct on the anchored test set "
                f"{record.test_set_digest.short}, {measured.device}); difference "
                f"{self.difference_bps:+d} bps, tolerance {self.tolerance_bps} bps"
            )
        if record.revocation is not None:
            replacement = record.revocation.replacement
            line += (
                f"\n  this checkpoint is REVOKED ({record.revocation.reason.label}) since block "
                f"{record.revocation.block_number}"
                + (f"; use {replacement} instead" if replacement else "")
            )
        return line


def _bps(value: int) -> str:
    return f"{value / 100:.2f} % ({value} bps)"


def _check_tolerance(value: int | None) -> None:
    if value is not None and not 0 <= value <= MAX_ACCURACY_BPS:
        raise InvalidInput(
            f"--tolerance-bps {value} is outside 0..{MAX_ACCURACY_BPS}; give basis points "
            "(1 bps = 0.01 %)",
            tolerance_bps=value,
        )


def default_tolerance_bps(device_type: str, n: int) -> int:
    """0 on the CPU (the trainer's own device for this measurement); on CUDA the larger of
    ``CUDA_TOLERANCE_BPS`` and one of the ``n`` test images (see the module docstring)."""
    if device_type == "cpu":
        return 0
    return max(CUDA_TOLERANCE_BPS, math.ceil(MAX_ACCURACY_BPS / n))


def load_test_data(path: Path, fmt: str, seed: int) -> Dataset:
    """``path`` read exactly as ``registry train`` reads it (same loader, seed and val share).

    Only the test split is used, but the loaders check and split whole datasets, and an image
    folder without train/test sub-folders takes its test split by a permutation seeded with the
    training seed: the same seed gives the same test split, hence the same digest.
    """
    from training.config import TrainConfig
    from training.data import load_dataset

    try:
        return load_dataset(path, fmt, seed=seed, val_fraction=TrainConfig().val_fraction)
    except OSError as exc:  # an unreadable folder: the loaders name files they fail to parse
        raise InvalidInput(
            f"cannot read --data {exc.filename or path}: {exc.strerror or exc}; check the path "
            "and its permissions",
            path=str(exc.filename or path),
            errno=errno_name(exc),
        ) from exc


def check_fits(spec: ModelSpec, dataset: Dataset, path: Path) -> None:
    """Refuse data the checkpoint's network cannot be evaluated on, naming both shapes."""
    model = (spec.in_channels, spec.input_size, spec.num_classes)
    data = (dataset.in_channels, dataset.input_size, dataset.num_classes)
    if model != data:
        raise InvalidInput(
            f"--data {path} holds {data[0]}-channel {data[1]}x{data[1]} images in {data[2]} "
            f"classes, but the checkpoint's network takes {model[0]}-channel {model[1]}x"
            f"{model[1]} images in {model[2]} classes; give the test data this model was "
            "trained for",
            data=str(path),
            model_shape={"in_channels": model[0], "input_size": model[1], "num_classes": model[2]},
            data_shape={"in_channels": data[0], "input_size": data[1], "num_classes": data[2]},
        )


@contextlib.contextmanager
def strict_float32(device: torch.device) -> Iterator[None]:
    """On CUDA: no TF32, deterministic cuDNN kernels, no benchmarking; the caller's settings
    are restored afterwards. The CPU computes in float32 already."""
    import torch

    if device.type != "cuda":
        yield
        return
    backends = torch.backends
    previous = (
        backends.cudnn.allow_tf32,
        backends.cuda.matmul.allow_tf32,
        backends.cudnn.benchmark,
        backends.cudnn.deterministic,
    )
    backends.cudnn.allow_tf32 = False
    backends.cuda.matmul.allow_tf32 = False
    backends.cudnn.benchmark = False
    backends.cudnn.deterministic = True
    try:
        yield
    finally:
        (
            backends.cudnn.allow_tf32,
            backends.cuda.matmul.allow_tf32,
            backends.cudnn.benchmark,
            backends.cudnn.deterministic,
        ) = previous


def reevaluate(
    args: argparse.Namespace,
    connect: Callable[[], RegistryClient] | None = None,
    before_measuring: Callable[[RegistryClient, Digest, ModelRecord], None] | None = None,
) -> Reevaluation:
    """Check ``args.file``'s anchored claim against ``args.data`` (see the module docstring).

    ``connect`` makes the chain client once the input is checked (default: ``client_for``);
    ``before_measuring`` may refuse a registered checkpoint before any work on it (``--attest``
    asks whether the contract would take the attestation)."""
    require_extra("train", *_STACK, command="evaluate")
    _check_tolerance(args.tolerance_bps)
    from training.loop import resolve_device

    device = resolve_device(args.device)  # a bad --device fails before any work is done
    file: Path = args.file
    data = read_regular_file(file)
    # The one format check, on the bytes that are hashed and then loaded (never unpickles).
    checked = inspect_checkpoint(data)
    digest = digest_bytes(data)
    # All input is checked before the chain is asked: bad input is exit 2 whatever is anchored.
    dataset = load_test_data(args.data, args.data_format, args.seed)
    check_fits(checked.spec, dataset, args.data)
    client = connect() if connect is not None else client_for(args)
    record = client.get(digest)
    if record is None:
        return Reevaluation(file, digest, client.chain_id, "unregistered")
    if before_measuring is not None:
        before_measuring(client, digest, record)
    test_set = Digest(dataset.test.digest())

    from training.checkpoint import load_checkpoint_bytes
    from training.config import TrainConfig
    from training.evaluate import evaluate_model

    # As the gate does: a checked checkpoint becomes a network from the same bytes.
    network, spec = load_checkpoint_bytes(data, checked)
    with strict_float32(device):
        metrics = evaluate_model(
            network.to(device), dataset.test, spec, TrainConfig().eval_batch_size
        )
    measured = Measurement(test_set, metrics.n, metrics.correct, metrics.accuracy_bps, device.type)
    tolerance = (
        args.tolerance_bps
        if args.tolerance_bps is not None
        else default_tolerance_bps(device.type, metrics.n)
    )
    outcome: Outcome
    if test_set != record.test_set_digest:
        outcome = "different_test_set"
    elif abs(metrics.accuracy_bps - record.accuracy_bps) <= tolerance:
        outcome = "reproduced"
    else:
        outcome = "not_reproduced"
    return Reevaluation(
        file,
        digest,
        client.chain_id,
        outcome,
        record,
        args.data,
        dataset.format,
        measured,
        tolerance,
    )


def cmd_evaluate(args: argparse.Namespace, out: Output) -> int:
    if args.attest:
        return _evaluate_and_attest(args, out)
    if args.report_out is not None:
        raise InvalidInput(
            "--report-out writes the report that an attestation anchors; give --attest too "
            "(or keep `--json` output as the report)",
            report_out=str(args.report_out),
        )
    result = reevaluate(args)
    out.result(result.to_dict(), result.explain())
    return result.exit_code


def report_bytes(result: Reevaluation) -> bytes:
    """The evaluation report: the evaluate JSON exactly as ``registry evaluate --json`` prints
    it, so anyone holding the report can hash it and compare with the anchored digest."""
    return (json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str) + "\n").encode()


def _evaluate_and_attest(args: argparse.Namespace, out: Output) -> int:
    """Measure, then attest the measured accuracy on the data's test split (the anchored one or
    the evaluator's own), with the report's SHA-256 when ``--report-out`` saved it. The exit code
    is still evaluate's (0 only when the claim was reproduced)."""
    from registry.chain.attestations import Attestations
    from registry.cli.attest import describe, precheck
    from registry.core.files import atomic_write

    clients: list[RegistryClient] = []

    def connect() -> RegistryClient:
        clients.append(writer_for(args, out))
        return clients[-1]

    result = reevaluate(args, connect, precheck)
    if result.record is None or result.measured is None:
        out.result(
            {**result.to_dict(), "attestation": None, "report": None},
            result.explain() + "\n  nothing attested",
        )
        return result.exit_code
    report_digest = None
    if args.report_out is not None:
        report = report_bytes(result)
        try:
            atomic_write(args.report_out, report)
        except OSError as exc:
            raise InvalidInput(
                f"cannot write --report-out {args.report_out}: {exc.strerror or exc}; nothing "
                "was attested",
                path=str(args.report_out),
            ) from exc
        report_digest = digest_bytes(report)
    measured = result.measured
    made = Attestations(clients[-1]).attest(
        result.digest, measured.accuracy_bps, measured.test_set_digest, report_digest
    )
    human = result.explain() + "\n  " + describe(made, result.record)
    if args.report_out is not None:
        human += f"\n  report {args.report_out} ({report_digest})"
    data = {
        **result.to_dict(),
        "attestation": made.to_dict(result.record),
        "report": None if args.report_out is None else str(args.report_out),
    }
    out.result(data, human)
    return result.exit_code


def _add_evaluate(add: AddCommand) -> None:
    # Defaults are the trainer's, read without importing torch (training.config is plain).
    from training.config import FORMATS, TrainConfig

    p = add(
        "evaluate",
        cmd_evaluate,
        "re-run a registered checkpoint's accuracy claim on test data "
        "(exit 0 reproduced, 1 not reproduced, other test set or unregistered, 2 bad input)",
    )
    p.add_argument("file", type=Path, help="the checkpoint (.safetensors)")
    p.add_argument(
        "--data",
        metavar="PATH",
        type=Path,
        required=True,
        help="the test data, as given to `registry train`: a folder of MNIST-format IDX files, "
        "a MedMNIST .npz, or an image folder (<root>/<class>/*.png)",
    )
    p.add_argument(
        "--data-format",
        choices=[f for f in FORMATS if f != "builtin"],
        default="auto",
        help="how to read --data (default: auto, from the path)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=TrainConfig().seed,
        help="the training seed; only an image folder without train/test sub-folders splits "
        f"by it (default: {TrainConfig().seed}, the trainer's)",
    )
    p.add_argument(
        "--tolerance-bps",
        type=int,
        default=None,
        help="largest |measured - claimed| still reproduced, in basis points (default: 0 on "
        f"the CPU; on CUDA {CUDA_TOLERANCE_BPS} or one test image, whichever is larger)",
    )
    p.add_argument(
        "--attest",
        action="store_true",
        help="then attest the measured accuracy on the data's test split (the anchored test set "
        "or your own) with the signing key, which must hold the evaluator role",
    )
    p.add_argument(
        "--report-out",
        metavar="FILE",
        type=Path,
        help="with --attest: write the evaluate JSON here and anchor its SHA-256 as the report "
        "digest (default: no report)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="'cpu' (where the trainer measured the claim), 'cuda', 'cuda:1'... (default: cpu)",
    )


def add_commands(add: AddCommand) -> None:
    """Add evaluate."""
    _add_evaluate(add)
