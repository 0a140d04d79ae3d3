"""``registry proof``: a proof bundle for one checkpoint, to verify later with no node.

The bundle (``registry.core.bundles``) holds a block header and the proofs of the registry's
account and of the record's storage slots at that block (default: the latest confirmed one; give
``--block`` to make it at a block the clinic pinned). ``registry verify FILE --bundle B
--trusted-block-hash 0x…`` (or ``--trusted-checkpoint FILE``) checks it offline. A node without
``eth_getProof`` (``REGISTRY_RPC_URL=memory``) is named and the command exits 2. Base install.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from registry.cli.output import EXIT_OK, EXIT_USAGE, AddCommand, Output, client_for
from registry.errors import InvalidInput, ProofsUnsupported


def cmd_proof(args: argparse.Namespace, out: Output) -> int:
    from registry.chain.proofs import make_bundle
    from registry.core.digest import Digest
    from registry.core.files import atomic_write

    digest = Digest.parse(args.digest)  # a typo is reported before the chain is reached
    client = client_for(args)
    try:
        checked = make_bundle(client, digest, args.block)
    except ProofsUnsupported as exc:
        out.error(exc)
        return EXIT_USAGE
    data = checked.bundle.to_json()
    if args.output is None or str(args.output) == "-":
        print(data.decode("ascii"), end="")
        return EXIT_OK
    try:
        atomic_write(args.output, data)
    except OSError as exc:
        raise InvalidInput(
            f"cannot write {args.output}: {exc.strerror or exc}", path=str(args.output)
        ) from None
    record = checked.record
    state = (
        "not registered"
        if record is None
        else ("revoked" if record.revocation else "registered, not revoked")
    )
    out.result(
        {
            "file": str(args.output),
            "bytes": len(data),
            "digest": str(digest),
            **checked.to_dict(),
            "record": record.to_dict() if record else None,
        },
        f"wrote {args.output} ({len(data)} bytes): {digest.short} {state} at block "
        f"{checked.block_number} (0x{checked.block_hash.hex()}) of chain {checked.bundle.chain_id}; "
        f"verify it offline with: registry verify FILE --bundle {args.output} "
        f"--trusted-block-hash 0x{checked.block_hash.hex()}",
    )
    return EXIT_OK


def add_commands(add: AddCommand) -> None:
    """Add proof."""
    p = add(
        "proof",
        cmd_proof,
        "write a proof bundle for a checkpoint: verifiable later with no node (needs eth_getProof)",
    )
    p.add_argument("digest", help="the checkpoint's SHA-256 (sha256:..., 0x... or 64 hex)")
    p.add_argument("-o", "--output", type=Path, help="where to write the bundle (default: stdout)")
    p.add_argument(
        "--block",
        type=int,
        help="the block to prove the record at, e.g. one the clinic pinned (default: the latest "
        "confirmed block)",
    )
