"""``registry pull``: fetch a registered checkpoint from sources nobody has to trust.

A clinic that knows a model's digest (from a colleague, a hub's page, a registry listing) takes
its bytes from any copy: each source is read with the service's size cap and timeout, and bytes
are kept in the local store the service uses (``<data_dir>/store``) only when they hash to the
digest, which is registered and valid under the clinic's policy, and pass the format check. On
the command line every source kind is accepted (another registry service, an http(s) folder or
file, an s3:// object or folder, a local file or folder; ``registry.pull`` says how each is read): the operator names them.
Base install only: no torch, no web framework.
"""

from __future__ import annotations

import argparse

from registry.cli.output import EXIT_OK, AddCommand, Output, client_for, settings_for


def cmd_pull(args: argparse.Namespace, out: Output) -> int:
    from registry.core.digest import Digest
    from registry.core.policy import Policy
    from registry.core.store import FileStore
    from registry.pull import pull
    from registry.verify import verify_digest

    wanted = Digest.parse(args.digest)  # a typo is reported before the chain is reached
    settings = settings_for(args)
    sources = args.sources or settings.mirrors
    client = client_for(args)
    policy = Policy.from_settings(settings)
    result = pull(
        wanted,
        sources,
        verdict_of=lambda d: verify_digest(client, d, policy),
        store=FileStore(settings.data_dir / "store"),
        max_bytes=settings.max_upload_bytes,
        timeout_s=settings.pull_timeout_s,
        s3_endpoint_url=settings.s3_endpoint_url,
    )
    if result.source is None:
        human = f"{wanted} is already in the store; nothing was fetched"
    else:
        skipped = "".join(f"\n  skipped {a['source']}: {a['message']}" for a in result.attempts)
        human = f"pulled {wanted} from {result.source} into the store{skipped}"
    out.result(result.to_dict(), human)
    return EXIT_OK


def add_commands(add: AddCommand) -> None:
    """Add pull."""
    p = add(
        "pull",
        cmd_pull,
        "fetch a registered, valid checkpoint from untrusted sources into the local store",
    )
    p.add_argument("digest", help="the checkpoint's SHA-256 (sha256:..., 0x... or 64 hex)")
    p.add_argument(
        "--from",
        dest="sources",
        action="append",
        default=[],
        metavar="SOURCE",
        help="a registry service's base URL (https://host/), an http(s) or s3:// folder ending "
        "in / (holding <hex>.safetensors), a file URL, s3://bucket/key, or a local file or "
        "folder; repeat to try "
        "several in order (default: REGISTRY_MIRRORS)",
    )
