"""Model-signing bundles kept beside the checkpoints they sign, found by the checkpoint's digest.

The checkpoint store is addressed by each object's own SHA-256; a signature bundle has to be found
from the checkpoint it signs, and a checkpoint may carry several (one per signer). So bundles live
in their own folder, ``root/<ab>/<checkpoint hex>/<bundle sha256>.sig``: written atomically,
read-only, never overwritten, re-hashed on every read. Nothing here trusts a bundle: the gate
verifies each one it reads (``registry.oms``), and only bundles that verified are ever added.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from registry.core.files import atomic_write
from registry.core.store import check_digest
from registry.errors import StoreError

MAX_BUNDLES_PER_CHECKPOINT = 16  # signers per checkpoint a clinic may hold; more is a mistake
_READ_ONLY = 0o444


class BundleShelf:
    """Model-signing bundles on the local file system, per checkpoint digest."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> BundleShelf:
        """The shelf of a service or command using ``data_dir``: ``<data_dir>/oms-bundles``."""
        return cls(Path(data_dir) / "oms-bundles")

    def __repr__(self) -> str:
        return f"BundleShelf({str(self.root)!r})"

    def _folder(self, checkpoint_hex: str) -> Path:
        check_digest(checkpoint_hex)
        return self.root / checkpoint_hex[:2] / checkpoint_hex

    def add(self, checkpoint_hex: str, bundle: bytes) -> tuple[str, bool]:
        """Keep ``bundle`` for the checkpoint: (the bundle's SHA-256, whether it is new)."""
        folder = self._folder(checkpoint_hex)
        name = hashlib.sha256(bundle).hexdigest()
        target = folder / f"{name}.sig"
        if target.is_file():
            return name, False
        held = len(list(folder.glob("*.sig"))) if folder.is_dir() else 0
        if held >= MAX_BUNDLES_PER_CHECKPOINT:
            raise StoreError(
                f"sha256:{checkpoint_hex[:12]}… already has {held} model-signing bundles, the "
                f"most one checkpoint may carry; remove the ones no longer trusted from {folder}",
                digest=checkpoint_hex,
                kind="oms_bundle",
            )
        try:
            atomic_write(target, bundle, overwrite=False, mode=_READ_ONLY)
        except FileExistsError:
            return name, False  # a concurrent writer kept the same bytes
        except OSError as exc:
            raise StoreError(
                f"could not write a model-signing bundle under {self.root}: {exc}; check that "
                "the folder is writable and the disk is not full",
                digest=checkpoint_hex,
                kind="oms_bundle",
            ) from exc
        return name, True

    def bundles(self, checkpoint_hex: str) -> list[tuple[str, bytes]]:
        """(file name, bytes) of every intact bundle held for the checkpoint, in name order.

        A file whose bytes no longer hash to its name is skipped: it is not evidence of a
        signature, and the gate then finds no bundle (fail closed) rather than a wrong one.
        """
        folder = self._folder(checkpoint_hex)
        if not folder.is_dir():
            return []
        found = []
        for path in sorted(folder.glob("*.sig")):
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise StoreError(
                    f"could not read the model-signing bundle {path}: {exc}",
                    digest=checkpoint_hex,
                    kind="oms_bundle",
                ) from exc
            if hashlib.sha256(data).hexdigest() == path.stem:
                found.append((path.name, data))
        return found
