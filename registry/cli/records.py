"""The record commands: hash, register, verify, revoke, show, history and list.

These are what a clinic or a hospital ML team runs day to day, and all of them work on the base
install: nothing here imports torch, numpy or a web framework, and the chain client, the services
and the verifier are imported inside the handlers that need them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from registry.cli.output import (
    EXIT_FAILED,
    EXIT_OK,
    AddCommand,
    Output,
    client_for,
    settings_for,
    writer_for,
)
from registry.core.digest import Digest, digest_file, read_regular_file
from registry.core.records import RevocationReason, Verdict
from registry.errors import InvalidInput

if TYPE_CHECKING:
    from registry.chain.client import RegistryClient
    from registry.core.policy import Policy

LIST_CATCH_UP_S = 60.0  # `registry list` lets the index read this long before answering


def cmd_hash(args: argparse.Namespace, out: Output) -> int:
    digest = digest_file(args.file)
    out.result({"file": str(args.file), "digest": str(digest)}, f"{digest}  {args.file}")
    return EXIT_OK


def _add_hash(add: AddCommand) -> None:
    p = add("hash", cmd_hash, "print the SHA-256 of a file, as anchored on chain")
    p.add_argument("file", type=Path)


def card_bytes(args: argparse.Namespace) -> bytes | None:
    """The model card to read: --card, else model_card.json beside FILE unless --card-digest
    names a card kept elsewhere."""
    if args.card is None and args.card_digest:
        return None
    card: Path = args.card or (args.file.parent / "model_card.json")
    if args.card is None and not card.exists():
        raise InvalidInput(
            f"no model card given and {card} does not exist; pass --card FILE "
            "(the JSON written by `registry train`), or --card-digest D with --accuracy-bps "
            "and --test-set-digest",
            card=str(card),
        )
    return read_regular_file(card)


def cmd_register(args: argparse.Namespace, out: Output) -> int:
    from registry.services import register_with_card

    if args.batch:
        return _register_batch(args, out)
    if args.file is None:
        raise InvalidInput(
            "give the checkpoint to register (registry register FILE), or several with "
            "--batch FILE... --cards CARD...",
            missing=["file"],
        )
    result = register_with_card(
        lambda: writer_for(args, out),
        read_regular_file(args.file),
        card=card_bytes(args),
        card_digest=args.card_digest,
        accuracy_bps=args.accuracy_bps,
        test_set_digest=args.test_set_digest,
        parent=args.parent,
    )
    r = result.record
    human = (
        f"{'already registered (identical)' if result.already_registered else 'registered'} "
        f"{r.digest} with accuracy {r.accuracy_percent:.2f} % in block {result.block_number}"
    )
    out.result(result.to_dict(), human)
    return EXIT_OK


def _register_batch(args: argparse.Namespace, out: Output) -> int:
    """Anchor many checkpoints with one Merkle root; the manifest is written before the root is
    anchored, since without it no checkpoint of the batch can be shown to be in it."""
    from registry.cli.batch import keep_manifest, shelve_manifest
    from registry.core.files import atomic_write
    from registry.services import check_batch, refuse_anchored, register_batch

    single = ("file", "accuracy_bps", "test_set_digest", "card", "card_digest", "parent")
    given = [name for name in single if getattr(args, name) is not None]
    if given:
        flags = ", ".join("FILE" if n == "file" else "--" + n.replace("_", "-") for n in given)
        raise InvalidInput(
            f"--batch registers each checkpoint with its card from --cards; {flags} "
            "belong to a single registration",
            given=given,
        )
    files, cards = _batch_files(args.batch), _batch_files(args.cards or [])
    if len(cards) != len(files):
        raise InvalidInput(
            f"--batch names {len(files)} checkpoints but --cards {len(cards)} cards; give one "
            "model card per checkpoint, in the same order",
            checkpoints=len(files),
            cards=len(cards),
        )
    tree, manifest = check_batch(
        [(read_regular_file(f), read_regular_file(c)) for f, c in zip(files, cards, strict=True)]
    )
    client = writer_for(args, out)
    refuse_anchored(client, tree)  # before the manifest is written: nothing left behind
    path: Path = args.manifest or Path(f"batch-{tree.root.hex()[:12]}.manifest.json")
    try:
        atomic_write(path, manifest, overwrite=False)
    except FileExistsError:
        raise InvalidInput(
            f"{path} exists; a manifest is never overwritten: give another --manifest PATH",
            manifest=str(path),
        ) from None
    keep_manifest(args, manifest)  # in the store too, like a checkpoint, before anchoring
    batch = register_batch(lambda: client, tree, manifest)
    shelve_manifest(args, manifest)
    data = {**batch.to_dict(), "manifest": str(path)}
    out.result(
        data,
        f"registered a batch of {batch.count} checkpoints, root {batch.root_hex}, in block "
        f"{batch.registered_block}; manifest {path} (sha256 {batch.manifest_digest.short})",
    )
    return EXIT_OK


def _batch_files(paths: list[Path]) -> list[Path]:
    """The files named, a folder standing for its files in name order."""
    found: list[Path] = []
    for path in paths:
        found += sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return found


def _add_register(add: AddCommand) -> None:
    p = add("register", cmd_register, "anchor a checkpoint with its accuracy and evidence")
    p.add_argument("file", type=Path, nargs="?", help="the checkpoint (.safetensors)")
    p.add_argument(
        "--batch",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="anchor these checkpoints (or the files of a folder, in name order) with one Merkle "
        "root; each needs its model card in --cards",
    )
    p.add_argument(
        "--cards",
        type=Path,
        nargs="+",
        metavar="CARD",
        help="with --batch: the model cards, in the same order (or a folder of them)",
    )
    p.add_argument(
        "--manifest",
        type=Path,
        help="with --batch: where to write the batch manifest (default: "
        "batch-<root>.manifest.json here); never overwritten",
    )
    p.add_argument(
        "--accuracy-bps",
        type=int,
        help="test accuracy, basis points (default: the card's; required with --card-digest)",
    )
    p.add_argument(
        "--test-set-digest",
        help="digest of the test split (default: the card's; required with --card-digest)",
    )
    p.add_argument(
        "--card",
        type=Path,
        help="model card JSON, canonical as `registry train` writes it; accuracy and test set "
        "are read from it (default: model_card.json beside FILE)",
    )
    p.add_argument(
        "--card-digest",
        help="digest of a model card kept elsewhere, instead of --card "
        "(then --accuracy-bps and --test-set-digest are required)",
    )
    p.add_argument("--parent", help="digest of the checkpoint this one derives from")


def _explain(verdict: Verdict, name: str) -> str:
    if verdict.verified:
        return f"VERIFIED {name}: {verdict.detail} (chain {verdict.chain_id}, block {verdict.checked_block})"
    return f"NOT VERIFIED {name} [{verdict.reason}]: {verdict.detail}"


def cmd_verify(args: argparse.Namespace, out: Output) -> int:
    from registry.core.address import parse_address
    from registry.core.policy import Policy
    from registry.verify import verify_digest

    settings = settings_for(args)
    policy = Policy(
        min_accuracy_bps=args.min_accuracy_bps
        if args.min_accuracy_bps is not None
        else settings.min_accuracy_bps,
        trusted_registrants=frozenset(parse_address(a, "--trusted").lower() for a in args.trusted)
        if args.trusted
        else frozenset(settings.trusted_registrants),
        min_attestations=settings.min_attestations,
        trusted_evaluators=tuple(settings.trusted_evaluators),
        attestation_tolerance_bps=settings.attestation_tolerance_bps,
    )
    oms = None
    if args.oms_key and args.oms_bundle is None:
        raise InvalidInput("--oms-key checks a model-signing bundle: give --oms-bundle SIG too")
    if args.oms_bundle is not None:  # read now: an unusable bundle or key is exit 2, chain unasked
        from registry.oms import SignatureRequirement

        oms = SignatureRequirement.from_files(
            args.oms_bundle, args.oms_key or settings.trusted_oms_keys
        )
    digest = digest_file(args.file)
    if args.bundle is not None or args.trusted_block_hash or args.trusted_checkpoint:
        return _verify_offline(args, out, digest, policy, oms)
    from registry.chain.connection import connect

    if args.manifest is not None or args.proof is not None:
        return _verify_in_batch(args, out, connect(settings), digest, policy, oms)
    verdict = verify_digest(connect(settings), digest, policy)
    verdict = oms(verdict) if oms is not None else verdict
    out.result({"file": str(args.file), **verdict.to_dict()}, _explain(verdict, str(args.file)))
    return EXIT_OK if verdict.verified else EXIT_FAILED


def _verify_in_batch(
    args: argparse.Namespace,
    out: Output,
    client: RegistryClient,
    digest: Digest,
    policy: Policy,
    oms: Callable[[Verdict], Verdict] | None = None,
) -> int:
    from registry.core.batches import Manifest
    from registry.verify import verify_in_manifest

    if args.proof is not None:
        from registry.cli.batch import read_proof
        from registry.verify import verify_in_batch

        if args.manifest is not None:
            raise InvalidInput("give --manifest or --proof, not both: each names the batch")
        p = read_proof(args.proof)
        verdict, place = verify_in_batch(
            client, digest, p.root, p.leaf, p.proof, policy, p.position
        )
    else:
        manifest = Manifest.parse(read_regular_file(args.manifest), source=str(args.manifest))
        verdict, place = verify_in_manifest(client, digest, manifest, policy)
    verdict = oms(verdict) if oms is not None else verdict
    human = _explain(verdict, str(args.file))
    if place.batch is not None:
        human += f" [batch 0x{place.root.hex()}, position {place.position}]"
    data = {"file": str(args.file), **verdict.to_dict(), "batch": place.to_dict()}
    out.result(data, human)
    return EXIT_OK if verdict.verified else EXIT_FAILED


def _verify_offline(
    args: argparse.Namespace,
    out: Output,
    digest: Digest,
    policy: Policy,
    oms: Callable[[Verdict], Verdict] | None = None,
) -> int:
    """``verify --bundle``: no node is asked; the bundle is believed only from a trusted hash."""
    from registry.chain.artifacts import load_artifact
    from registry.core.bundles import ProofBundle
    from registry.offline import read_trusted_blocks, trust_for, verify_bundle

    if args.bundle is None or args.manifest is not None:
        raise InvalidInput(
            "--trusted-block-hash and --trusted-checkpoint check a proof bundle: give --bundle "
            "FILE (and no --manifest)"
        )
    settings = settings_for(args)
    bundle = ProofBundle.parse(read_regular_file(args.bundle), source=str(args.bundle))
    pinned = args.trusted_checkpoint
    if pinned is None and args.trusted_block_hash is None:
        pinned = settings.trusted_checkpoint_file  # the clinic's own pins, when it has some
    trust = trust_for(
        settings,
        bundle,
        trusted_block_hash=args.trusted_block_hash,
        trusted_blocks=read_trusted_blocks(pinned) if pinned is not None else None,
        source=str(pinned),
    )
    offline = verify_bundle(
        bundle,
        digest,
        trust,
        load_artifact().deployed_bytecode,
        policy=policy,
        confirmations=settings.confirmations,
    )
    verdict = oms(offline.verdict) if oms is not None else offline.verdict
    human = _explain(verdict, str(args.file))
    human += "\n  a bundle cannot show: " + "; ".join(offline.checked.to_dict()["cannot_show"])
    out.result({"file": str(args.file), **offline.to_dict(), **verdict.to_dict()}, human)
    return EXIT_OK if verdict.verified else EXIT_FAILED


def _add_verify(add: AddCommand) -> None:
    p = add(
        "verify", cmd_verify, "check a checkpoint file against the registry (exit 0 = verified)"
    )
    p.add_argument("file", type=Path)
    p.add_argument(
        "--manifest",
        type=Path,
        help="verify the file through the batch whose manifest this is (default: its own record)",
    )
    p.add_argument(
        "--proof",
        type=Path,
        help="verify the file through its batch with this one-checkpoint proof (`registry batch "
        "proof`), instead of the whole manifest",
    )
    p.add_argument(
        "--bundle",
        type=Path,
        help="verify offline, with no node, from this proof bundle (`registry proof`); needs "
        "--trusted-block-hash or --trusted-checkpoint",
    )
    p.add_argument(
        "--trusted-block-hash",
        metavar="0xHASH",
        help="with --bundle: the hash of the bundle's block, from a source you trust",
    )
    p.add_argument(
        "--trusted-checkpoint",
        type=Path,
        metavar="FILE",
        help="with --bundle: a file of pinned block numbers and hashes (and the chain id and "
        "registry address) the bundle's block must be one of (default: "
        "REGISTRY_TRUSTED_CHECKPOINT_FILE)",
    )
    p.add_argument("--min-accuracy-bps", type=int, help="policy: minimum accuracy (default 0)")
    p.add_argument(
        "--trusted",
        action="append",
        metavar="ADDRESS",
        help="policy: trusted registrant (repeatable; default: any)",
    )
    p.add_argument(
        "--oms-bundle",
        type=Path,
        metavar="SIG",
        help="also require this OpenSSF model-signing bundle (key-based, whole-file SHA-256) to "
        "sign the file's anchored digest (the [oms] extra)",
    )
    p.add_argument(
        "--oms-key",
        type=Path,
        action="append",
        metavar="PUBKEY",
        help="PEM public key the bundle must be signed by (repeatable; default: "
        "REGISTRY_TRUSTED_OMS_KEYS)",
    )


def cmd_revoke(args: argparse.Namespace, out: Output) -> int:
    from registry.services import revoke

    record = revoke(lambda: writer_for(args, out), args.digest, args.reason, args.replacement)
    out.result(
        record.to_dict(),
        f"revoked {record.digest} (reason: {RevocationReason.parse(args.reason).label})",
    )
    return EXIT_OK


def _add_revoke(add: AddCommand) -> None:
    p = add("revoke", cmd_revoke, "revoke a checkpoint for good")
    p.add_argument("digest")
    p.add_argument(
        "--reason",
        required=True,
        help="superseded, safety-issue, performance-"
        "degradation, data-problem, security-compromise, regulatory, "
        "registered-in-error, other (or the code)",
    )
    p.add_argument("--replacement", help="digest of the registered checkpoint to use instead")


def cmd_show(args: argparse.Namespace, out: Output) -> int:
    client = client_for(args)
    digest = Digest.parse(args.digest)
    record = client.get(digest)
    if record is None:
        from registry.cli.batch import show_batched

        batched = show_batched(args, out, client, digest)  # in a batch on the data dir's shelf
        if batched is not None:
            return batched
        out.result(
            {"digest": str(digest), "registered": False},
            f"{digest} is not registered on chain {client.chain_id}",
        )
        return EXIT_FAILED
    data = {
        **record.to_dict(),
        "lineage": [str(r.digest) for r in client.lineage(digest)],
        "children": [str(d) for d in client.children(digest)],
    }
    from registry.chain.attestations import Attestations

    attestations = Attestations(client).all(digest)
    data["attestations"] = [a.to_dict(record) for a in attestations]
    state = "VALID" if record.valid else f"REVOKED ({record.revocation.reason.label})"  # type: ignore[union-attr]
    out.result(
        data,
        "\n".join(
            [
                f"{record.digest}  {state}",
                f"  registrant   {record.registrant} at {data['registered_at']} (block {record.registered_block})",
                f"  accuracy     {record.accuracy_percent:.2f} % on test set {record.test_set_digest}",
                f"  model card   {record.card_digest}",
                f"  parent       {record.parent or '(first version)'}",
                f"  children     {', '.join(data['children']) or '(none)'}",
                f"  attestations {len(attestations) or '(none)'}",
                *(f"    {a.describe(record)}" for a in attestations),
            ]
        ),
    )
    return EXIT_OK


def _add_show(add: AddCommand) -> None:
    p = add("show", cmd_show, "show a checkpoint's record, lineage and children")
    p.add_argument("digest")


def cmd_history(args: argparse.Namespace, out: Output) -> int:
    from registry.cli.batch import batch_history, history_line

    client = client_for(args)
    digest = Digest.parse(args.digest) if args.digest else None
    events = client.history(digest)
    lines = [f"block {e.block_number:>8}  {e.kind:<10} {e.digest}  by {e.actor}" for e in events]
    # Batches the checkpoint is in (from the data dir's shelf), or every batch: chain order.
    batches = batch_history(args, client, digest)
    rows = [
        ((e.block_number, e.log_index), e.to_dict(), line)
        for e, line in zip(events, lines, strict=True)
    ]
    rows += [((b["block_number"], b["log_index"]), b, history_line(b)) for b in batches]
    rows.sort(key=lambda row: row[0])
    out.result([r[1] for r in rows], "\n".join(r[2] for r in rows) or "no events")
    return EXIT_OK


def _add_history(add: AddCommand) -> None:
    p = add("history", cmd_history, "registrations and revocations, in chain order")
    p.add_argument("digest", nargs="?", help="only this checkpoint (default: all)")


def cmd_list(args: argparse.Namespace, out: Output) -> int:
    """From the service's event index when ``<data_dir>/index.sqlite3`` exists (caught up
    first), else straight from the chain, a page at a time; every page unless --limit or
    --cursor asks for one."""
    from registry.core.address import parse_address
    from registry.index import (
        MAX_LIMIT,
        ChainIndex,
        Filters,
        Page,
        PageQuery,
        chain_page,
        index_path,
    )

    settings = settings_for(args)
    client = client_for(args)
    filters = Filters(
        registrant=parse_address(args.registrant, "--registrant") if args.registrant else None,
        valid=True if args.valid else False if args.revoked else None,
        parent=Digest.parse(args.parent) if args.parent else None,
        min_accuracy_bps=args.min_accuracy_bps,
    )
    one_page = args.limit is not None or args.cursor is not None
    query = PageQuery.parse(filters, args.limit or MAX_LIMIT, args.cursor)
    path = index_path(settings.data_dir)

    def read(q: PageQuery) -> Page:
        return index.page(q) if index is not None else chain_page(client, q)

    index = None
    if path.exists():
        index = ChainIndex(path, lambda: client, confirmations=settings.confirmations)
        index.catch_up(budget_s=LIST_CATCH_UP_S)
    page = read(query)
    records = list(page.records)
    while not one_page and page.next_cursor is not None:
        page = read(PageQuery.parse(filters, MAX_LIMIT, page.next_cursor))
        records.extend(page.records)
    lines = [
        f"{r.digest}  {'valid  ' if r.valid else 'revoked'}  {r.accuracy_percent:6.2f} %  {r.registrant}"
        for r in records
    ]
    if not one_page:
        out.result([r.to_dict() for r in records], "\n".join(lines) or "no models")
        return EXIT_OK
    if page.next_cursor is not None:
        lines.append(f"more: registry list --cursor {page.next_cursor} (same filters)")
    data = {
        "models": [r.to_dict() for r in records],
        "next_cursor": page.next_cursor,
        "indexed_to_block": page.indexed_to_block,
    }
    out.result(data, "\n".join(lines) or "no models")
    return EXIT_OK


def _add_list(add: AddCommand) -> None:
    p = add(
        "list",
        cmd_list,
        "list registered checkpoints, in registration order (from the service's event index "
        "in the data dir when there is one)",
    )
    p.add_argument("--registrant", help="only those registered by this address")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--valid", action="store_true", help="only valid ones")
    state.add_argument("--revoked", action="store_true", help="only revoked ones")
    p.add_argument("--parent", help="only versions derived from this digest")
    p.add_argument("--min-accuracy-bps", type=int, help="only those with at least this accuracy")
    p.add_argument(
        "--limit",
        type=int,
        help="one page of at most this many (1-500; default: every record, page by page); "
        "--json then gives {models, next_cursor, indexed_to_block}",
    )
    p.add_argument("--cursor", help="the page after the one that printed this cursor")


def add_commands(add: AddCommand) -> None:
    """Add the record commands, in the order ``registry --help`` lists them."""
    for add_one in (
        _add_hash,
        _add_register,
        _add_verify,
        _add_revoke,
        _add_show,
        _add_history,
        _add_list,
    ):
        add_one(add)
