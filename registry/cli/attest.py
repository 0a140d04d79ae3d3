"""``registry attest``: an evaluator anchors its own measurement of someone else's checkpoint.

``registry attest DIGEST --accuracy-bps N --test-set-digest D [--report FILE]`` attests; the
test set is the anchored one (the record's) or the evaluator's own, and the answer says which.
``registry attest revoke DIGEST`` withdraws the signer's standing attestation. The signing key
must hold the evaluator role (``registry roles grant evaluator ADDRESS``, by the admin).
``registry evaluate FILE --data PATH --attest`` measures and attests in one step.

What the contract would refuse (no evaluator role, an unknown or revoked checkpoint, the
registrant's own, a second standing attestation) is read from the chain first and refused with
the contract's own typed error, before any gas is spent; the contract checks again on sending.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from registry.cli.output import EXIT_OK, AddCommand, Output, writer_for
from registry.core.digest import Digest, digest_file
from registry.errors import InvalidInput

if TYPE_CHECKING:
    from registry.chain.client import RegistryClient
    from registry.core.attestations import Attestation
    from registry.core.records import ModelRecord


def attest_checked(
    client: RegistryClient,
    digest: Digest,
    accuracy_bps: int,
    test_set_digest: Digest,
    report_digest: Digest | None,
) -> tuple[Attestation, ModelRecord]:
    """Refuse what the contract would refuse, then attest; the attestation and the record."""
    from registry.chain.attestations import Attestations

    record = client.get(digest)
    precheck(client, digest, record)
    assert record is not None  # precheck refuses an unknown checkpoint
    made = Attestations(client).attest(digest, accuracy_bps, test_set_digest, report_digest)
    return made, record


def precheck(client: RegistryClient, digest: Digest, record: ModelRecord | None) -> None:
    """Raise what the contract would refuse an attestation of ``digest`` by ``client``'s key
    with (``registry evaluate --attest`` asks before it measures)."""
    from registry.chain.attestations import Attestations

    refused = Attestations(client).refusal(digest, record)
    if refused is not None:
        raise refused


def describe(attestation: Attestation, record: ModelRecord) -> str:
    kind = "anchored" if attestation.test_set(record) == "anchored" else "own"
    line = (
        f"attested {attestation.digest}: {attestation.accuracy_bps / 100:.2f} % "
        f"({attestation.accuracy_bps} bps) on the {kind} test set {attestation.test_set_digest}"
        f" by {attestation.evaluator} (block {attestation.attested_block}, {attestation.tx_hash})"
    )
    if kind == "anchored":
        difference = attestation.accuracy_bps - record.accuracy_bps
        line += f"; the registrant claimed {record.accuracy_bps / 100:.2f} % ({difference:+d} bps)"
    return line


def cmd_attest(args: argparse.Namespace, out: Output) -> int:
    target: list[str] = args.target
    if target[0] == "revoke":
        if len(target) != 2 or args.accuracy_bps is not None or args.test_set_digest is not None:
            raise InvalidInput("usage: registry attest revoke DIGEST (no other argument)")
        return _withdraw(args, out, Digest.parse(target[1]))
    if len(target) != 1:
        raise InvalidInput(
            f"registry attest takes one digest, got {len(target)} arguments ({' '.join(target)}); "
            "use `registry attest DIGEST --accuracy-bps N --test-set-digest D` or "
            "`registry attest revoke DIGEST`"
        )
    digest = Digest.parse(target[0])
    if args.accuracy_bps is None or args.test_set_digest is None:
        raise InvalidInput(
            "an attestation needs --accuracy-bps (what you measured) and --test-set-digest (the "
            "test split you measured it on: the anchored one from `registry show`, or your own)"
        )
    from registry.core.records import check_accuracy_bps

    accuracy = check_accuracy_bps(args.accuracy_bps)
    test_set = Digest.parse(args.test_set_digest)
    report = digest_file(args.report) if args.report is not None else None
    made, record = attest_checked(writer_for(args, out), digest, accuracy, test_set, report)
    out.result(made.to_dict(record), describe(made, record))
    return EXIT_OK


def _withdraw(args: argparse.Namespace, out: Output, digest: Digest) -> int:
    from registry.chain.attestations import Attestations

    client = writer_for(args, out)
    withdrawal = Attestations(client).withdraw(digest)
    record = client.get(digest)
    attestation = withdrawal.attestation
    data = {"digest": str(digest), "withdrawal_tx": withdrawal.tx_hash}
    if record is not None:
        data.update(attestation.to_dict(record))
    out.result(
        data,
        f"withdrew the attestation of {digest} by {attestation.evaluator} "
        f"({attestation.accuracy_bps / 100:.2f} %, made in block {attestation.attested_block}): "
        f"{withdrawal.tx_hash}",
    )
    return EXIT_OK


def _add_attest(add: AddCommand) -> None:
    from pathlib import Path

    p = add(
        "attest",
        cmd_attest,
        "attest your own measurement of a registered checkpoint (evaluator role), or withdraw it "
        "with `registry attest revoke DIGEST`",
    )
    p.usage = (
        "registry attest DIGEST --accuracy-bps N --test-set-digest D [--report FILE]\n"
        "       registry attest revoke DIGEST"
    )
    p.add_argument(
        "target", nargs="+", metavar="DIGEST", help="the checkpoint's digest (or: revoke DIGEST)"
    )
    p.add_argument("--accuracy-bps", type=int, help="the accuracy you measured (9731 = 97.31 %%)")
    p.add_argument(
        "--test-set-digest",
        help="the test split you measured on: the record's (the anchored test set) or your own",
    )
    p.add_argument(
        "--report",
        type=Path,
        help="your evaluation report; its SHA-256 is anchored with the attestation (default: none)",
    )


def add_commands(add: AddCommand) -> None:
    """Add attest."""
    _add_attest(add)
