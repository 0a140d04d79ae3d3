"""Batched checkpoints on the command line: listing the batches, cutting one checkpoint's proof
out of a manifest, and what the record commands (register, verify, show, history) need to say
about batches.

``registry batch proof --manifest M DIGEST -o PROOF.json`` writes the small file one hands over
with one checkpoint instead of the whole manifest; ``registry verify FILE --proof PROOF.json``
checks it. A batched checkpoint has no record of its own, so ``show`` and ``history`` find its
batches on the data dir's shelf of manifests (``registry.index.batches``), which ``register
--batch`` and the service's ``POST /batches`` fill.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.cli.output import EXIT_FAILED, EXIT_OK, AddCommand, Output, settings_for
from registry.core.digest import Digest, read_regular_file
from registry.errors import InvalidInput

if TYPE_CHECKING:
    from registry.chain.client import RegistryClient
    from registry.core.batch_proof import BatchProof
    from registry.index.batches import BatchShelf


def cmd_batch(args: argparse.Namespace, out: Output) -> int:
    if args.action == "list":
        return _batch_list(args, out)
    if args.digest is None or args.manifest is None:
        raise InvalidInput(
            "`registry batch proof` needs the checkpoint's digest and --manifest M",
            missing=[n for n in ("digest", "manifest") if getattr(args, n) is None],
        )
    return _batch_proof(args, out)


def _batch_list(args: argparse.Namespace, out: Output) -> int:
    """Every anchored batch, in chain order, and whether the data dir's shelf holds its
    manifest (then its checkpoints verify without one: `registry show`, the service)."""
    from registry.cli.output import client_for

    client = client_for(args)
    entries = batch_history(args, client, None)
    shelf = shelf_for(args)
    try:
        for entry in entries:
            entry["shelved"] = shelf is not None and shelf.holds(bytes.fromhex(entry["root"][2:]))
    finally:
        if shelf is not None:
            shelf.close()
    lines = [
        f"{e['root']}  {'valid  ' if not e['revoked'] else 'revoked'}  {e['count']:>6} models  "
        f"by {e['registrant']} in block {e['block_number']}"
        f"{'  (manifest here)' if e['shelved'] else ''}"
        for e in entries
    ]
    out.result(entries, "\n".join(lines) or "no batches")
    return EXIT_OK


def _batch_proof(args: argparse.Namespace, out: Output) -> int:
    from registry.core.batch_proof import BatchProof
    from registry.core.batches import Manifest
    from registry.core.files import atomic_write

    manifest = Manifest.parse(read_regular_file(args.manifest), source=str(args.manifest))
    digest = Digest.parse(args.digest)
    proof = BatchProof.from_manifest(manifest, digest)
    path: Path = args.output or Path(f"{digest.hex[:16]}.proof.json")
    try:
        atomic_write(path, proof.to_json(), overwrite=False)
    except FileExistsError:
        raise InvalidInput(
            f"{path} exists; a proof is never overwritten: give another -o PATH",
            output=str(path),
        ) from None
    out.result(
        {**proof.to_dict(), "output": str(path)},
        f"wrote {path}: checkpoint {digest.short} at position {proof.position} of batch "
        f"0x{proof.root.hex()} ({len(proof.proof)} sibling hashes)",
    )
    return EXIT_OK


def _add_batch(add: AddCommand) -> None:
    p = add("batch", cmd_batch, "batched checkpoints: list the batches, cut one checkpoint's proof")
    p.add_argument(
        "action",
        choices=["list", "proof"],
        help="list: every anchored batch; proof: write one checkpoint's proof",
    )
    p.add_argument("digest", nargs="?", help="proof: the checkpoint's SHA-256 (registry hash)")
    p.add_argument("--manifest", type=Path, help="proof: the batch's manifest")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        help="where to write the proof (default: <digest>.proof.json here); never overwritten",
    )


def add_commands(add: AddCommand) -> None:
    _add_batch(add)


# --- what the record commands use ----------------------------------------------------------


def read_proof(path: Path) -> BatchProof:
    from registry.core.batch_proof import BatchProof

    return BatchProof.parse(read_regular_file(path), source=str(path))


def shelf_for(args: argparse.Namespace) -> BatchShelf | None:
    """The data dir's shelf of batch manifests, if there is one (nothing is created)."""
    from registry.core.stores import open_store
    from registry.index.batches import BatchShelf, shelf_path

    settings = settings_for(args)
    path = shelf_path(settings.data_dir)
    return BatchShelf(path, open_store(settings)) if path.exists() else None


def keep_manifest(args: argparse.Namespace, manifest: bytes) -> None:
    """Put a batch's manifest in the store the settings name (a folder or a bucket), before
    its root is anchored, as a checkpoint's bytes are: a service sharing the store serves it."""
    from registry.core.stores import open_store

    open_store(settings_for(args)).put(manifest, "manifest")


def shelve_manifest(args: argparse.Namespace, manifest: bytes) -> None:
    """After anchoring: note the batch's checkpoints on the data dir's shelf, so a service on
    this data dir verifies them at once."""
    from registry.core.batches import Manifest
    from registry.core.stores import open_store
    from registry.index.batches import BatchShelf, shelf_path

    settings = settings_for(args)
    shelf = BatchShelf(shelf_path(settings.data_dir), open_store(settings))
    try:
        shelf.add(Manifest.parse(manifest))
    finally:
        shelf.close()


def show_batched(
    args: argparse.Namespace, out: Output, client: RegistryClient, digest: Digest
) -> int | None:
    """``registry show`` for a digest without a record of its own: its batches on the shelf
    (None when the shelf places it in none)."""
    from registry.verify import verify_located

    shelf = shelf_for(args)
    if shelf is None:
        return None
    try:
        proofs = list(shelf.proofs(digest))
    finally:
        shelf.close()
    if not proofs:
        return None
    verdict = verify_located(client, digest, proofs)
    places = [_place(client, proof) for proof in proofs]
    state = "VALID" if verdict.verified else f"NOT VALID ({verdict.reason}: {verdict.detail})"
    lines = [f"{digest}  {state}"]
    for place in places:
        lines.append(
            f"  in batch     {place['root']} at position {place['position']}"
            + (
                f", registered by {place['batch']['registrant']} in block "
                f"{place['batch']['registered_block']}"
                + (" (batch revoked)" if place["batch"]["revoked"] else "")
                if place["batch"]
                else " (not anchored)"
            )
        )
    record = verdict.record
    if record is not None:
        lines.append(
            f"  accuracy     {record.accuracy_percent:.2f} % on test set {record.test_set_digest}"
        )
        lines.append(f"  model card   {record.card_digest}")
        lines.append(f"  parent       {record.parent or '(first version)'}")
    out.result({**verdict.to_dict(), "batches": places, "registered": False}, "\n".join(lines))
    return EXIT_OK if verdict.verified else EXIT_FAILED


def _place(client: RegistryClient, proof: BatchProof) -> dict[str, Any]:
    batch, _ = client.batch(proof.root)
    return {
        "root": "0x" + proof.root.hex(),
        "position": proof.position,
        "batch": batch.to_dict() if batch is not None else None,
    }


def batch_history(
    args: argparse.Namespace, client: RegistryClient, digest: Digest | None
) -> list[dict[str, Any]]:
    """History entries for batches: every anchored batch (all history), or the batches the
    shelf places ``digest`` in (with its position); each with its revocation as the chain has
    it now."""
    from registry.chain.abi import BatchRegisteredEvent

    positions: dict[bytes, int] = {}
    if digest is not None:
        shelf = shelf_for(args)
        if shelf is None:
            return []
        try:
            positions = {place.root: place.position for place in shelf.places(digest)}
        finally:
            shelf.close()
        if not positions:
            return []
    entries = []
    for log in client.events.logs([client.abi.batch_registered_topic], 0):
        event = BatchRegisteredEvent.from_log(log)
        if digest is not None and event.root not in positions:
            continue
        batch, _ = client.batch(event.root)
        if batch is None:
            continue  # reorganised away since the log was read
        entries.append(
            {
                "kind": "batch-registered",
                "block_number": batch.registered_block,
                "log_index": int(log["logIndex"]),
                "position": positions.get(event.root),
                **batch.to_dict(),
            }
        )
    return entries


def history_line(entry: dict[str, Any]) -> str:
    at = "" if entry["position"] is None else f" position {entry['position']} of"
    revoked = f" (revoked: {entry['revocation_reason']})" if entry["revoked"] else ""
    return (
        f"block {entry['block_number']:>8}  {'batch':<10}{at} {entry['root']} "
        f"({entry['count']} checkpoints) by {entry['registrant']}{revoked}"
    )
