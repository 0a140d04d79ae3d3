"""The model-signing commands: export-signature and import-signature (the [oms] extra).

``export-signature`` writes, for a registered and valid checkpoint, an OpenSSF model-signing bundle
that ``model_signing verify key`` accepts, with the registration (chain, contract, transaction,
accuracy, test set) carried in its statement. ``import-signature`` keeps a bundle someone else
signed beside this data dir's checkpoints, where the gate finds it when
``REGISTRY_REQUIRE_OMS_SIGNATURE`` is on; only a bundle that a trusted key signed, for a digest
registered and valid under the clinic's policy, is kept.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from registry.cli.output import EXIT_FAILED, EXIT_OK, AddCommand, Output, client_for, settings_for
from registry.errors import InvalidInput


def cmd_export_signature(args: argparse.Namespace, out: Output) -> int:
    from registry.core.digest import Digest
    from registry.core.files import atomic_write
    from registry.oms import claim_of, sign_verdict
    from registry.verify import verify_digest

    digest = Digest.parse(args.digest)  # a typo is reported before the chain is reached
    path: Path = args.out or Path(f"{digest.hex[:12]}.sig")
    if path.exists():
        raise InvalidInput(
            f"{path} exists; a signature is never overwritten: give another --out PATH",
            out=str(path),
        )
    verdict = verify_digest(client_for(args), digest)
    if not verdict.verified:
        out.result(
            {"signed": False, **verdict.to_dict()},
            f"NOT SIGNED {digest} [{verdict.reason}]: {verdict.detail}; only a registered, "
            "valid checkpoint is signed",
        )
        return EXIT_FAILED
    bundle = sign_verdict(
        verdict, args.key, name=args.name or f"{digest.hex}.safetensors", password=None
    )
    try:
        atomic_write(path, bundle, overwrite=False)
    except FileExistsError:
        raise InvalidInput(
            f"{path} appeared meanwhile; give another --out PATH", out=str(path)
        ) from None
    data = {"signed": True, "signature": str(path), "digest": str(digest)}
    data["claim"] = claim_of(verdict)
    out.result(
        data,
        f"wrote the model-signing bundle {path} for {digest}; check it with "
        f"`model_signing verify key FILE --signature {path} --public_key PUBKEY`",
    )
    return EXIT_OK


def cmd_import_signature(args: argparse.Namespace, out: Output) -> int:
    from registry.core.digest import read_regular_file
    from registry.core.oms_bundles import BundleShelf
    from registry.core.policy import Policy
    from registry.oms import load_keys, verify_bundle
    from registry.verify import verify_digest

    settings = settings_for(args)
    data = read_regular_file(args.bundle)
    signed = verify_bundle(
        data, load_keys(args.oms_key or settings.trusted_oms_keys), source=str(args.bundle)
    )
    verdict = verify_digest(client_for(args), signed.digest, Policy.from_settings(settings))
    if not verdict.verified:
        out.result(
            {"imported": False, **verdict.to_dict()},
            f"NOT IMPORTED {args.bundle}: it signs {signed.digest}, which is not verified "
            f"[{verdict.reason}]: {verdict.detail}",
        )
        return EXIT_FAILED
    shelf = BundleShelf.in_data_dir(settings.data_dir)
    name, new = shelf.add(signed.digest.hex, data)
    out.result(
        {"imported": new, "bundle": name, "signed": signed.to_dict(), "verdict": verdict.to_dict()},
        f"{'kept' if new else 'already held'}: {args.bundle} signs {signed.digest} "
        f"(key {signed.key_hint[:16]}…); the gate finds it in {shelf.root}",
    )
    return EXIT_OK


def add_commands(add: AddCommand) -> None:
    """Add export-signature and import-signature."""
    p = add(
        "export-signature",
        cmd_export_signature,
        "write an OpenSSF model-signing bundle for a registered, valid checkpoint",
    )
    p.add_argument("digest", help="the checkpoint's SHA-256 (sha256:..., 0x... or 64 hex)")
    p.add_argument(
        "--key",
        type=Path,
        required=True,
        help="unencrypted PEM EC private key (P-256, P-384 or P-521) to sign with",
    )
    p.add_argument(
        "--out", type=Path, help="where to write the bundle (default: <digest prefix>.sig here)"
    )
    p.add_argument(
        "--name",
        help="the statement's subject name (informative; default: <digest>.safetensors)",
    )

    p = add(
        "import-signature",
        cmd_import_signature,
        "keep a model-signing bundle for the gate (REGISTRY_REQUIRE_OMS_SIGNATURE)",
    )
    p.add_argument("bundle", type=Path, help="the .sig file model_signing sign key wrote")
    p.add_argument(
        "--oms-key",
        type=Path,
        action="append",
        metavar="PUBKEY",
        help="PEM public key it must be signed by (repeatable; default: REGISTRY_TRUSTED_OMS_KEYS)",
    )
