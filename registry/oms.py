"""OpenSSF model-signing bundles: accepting theirs for a checkpoint, and writing ours.

A hospital that already signs its models with OpenSSF's ``model_signing`` (key-based, no network)
should not have to choose between that signature and the on-chain record, and a clinic that checks
models with ``model_signing verify key`` should be able to check ours. The two meet on one value:
a model-signing manifest of a *single file* hashed whole with SHA-256 carries exactly the digest
the registry anchors. So a bundle is accepted only in that shape (one resource, ``files``
serialization, ``sha256``); shard manifests and other hash algorithms describe other values and
are refused by name, never translated.

Accepting: ``check_bundle`` reads the Sigstore bundle strictly, refuses the wrong shapes, checks
the DSSE signature with ``model_signing``'s own key verifier against the trusted public keys, and
requires the signed resource digest to equal the anchored one. Writing: ``sign_verdict`` signs an
in-toto statement for a verified record's digest, with the registration (chain, contract,
transaction, block, accuracy, test set, card) in a ``registration`` predicate field, which
model-signing's v1.0 verifiers ignore by design.

``model_signing`` is the ``[oms]`` extra, imported inside the functions that need it, so the base
install imports this module and says what to install when it is missing. The public API of
``model_signing`` signs and verifies *paths*; the gate holds verified bytes in memory and must
not reopen a path, so the key verifier, the signer and the payload are taken from its
``_signing`` building blocks (pinned by tests/registry/test_oms.py against the real package).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelformat.strictjson import StrictJSONError
from modelformat.strictjson import loads as strict_loads
from registry.config import Settings
from registry.core.digest import HEX64, Digest, read_regular_file
from registry.core.oms_bundles import BundleShelf
from registry.core.records import Verdict
from registry.errors import ConfigurationError, InvalidInput, RegistryError

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
CLAIM_FIELD = "registration"  # our predicate field; v1.0 verifiers ignore unknown fields
MAX_BUNDLE_BYTES = 256 * 1024  # a one-file bundle is about 2 KiB; a directory's can be large
INSTALL_HINT = "pip install '.[oms]'"


class InvalidOmsBundle(InvalidInput):
    """Not a usable model-signing bundle or key: not JSON, not a Sigstore bundle, no key file."""

    code = "invalid_oms_bundle"


class OmsSignatureRefused(RegistryError):
    """A well-formed bundle that does not vouch for this checkpoint; ``problem`` says why:
    ``untrusted_key``, ``bad_signature``, ``digest_mismatch``, ``shard_manifest``,
    ``hash_algorithm``, ``several_resources``, ``predicate_type``, ``no_bundle``,
    ``no_trusted_keys``."""

    code = "oms_signature_refused"

    def __init__(self, problem: str, message: str, **details: Any) -> None:
        super().__init__(message, problem=problem, **details)
        self.problem = problem


def _model_signing() -> Any:
    """The ``model_signing`` building blocks, or a ConfigurationError naming the extra."""
    try:
        from model_signing._signing import sign_ec_key, sign_sigstore_pb, signing
    except ImportError as exc:
        raise ConfigurationError(
            f"OpenSSF model-signing is not installed ({exc}); {INSTALL_HINT} to check or write "
            "model-signing bundles",
            extra="oms",
        ) from None
    return sign_ec_key, sign_sigstore_pb, signing


@dataclass(frozen=True)
class OmsKey:
    """A trusted public key: its file, and the hint model-signing bundles name it by (SHA-256
    of its PEM SubjectPublicKeyInfo)."""

    path: Path
    hint: str
    verifier: Any  # model_signing's key verifier

    @classmethod
    def load(cls, path: Path) -> OmsKey:
        sign_ec_key, _, _ = _model_signing()
        from cryptography.hazmat.primitives import serialization

        pem = read_regular_file(path)
        try:
            public = serialization.load_pem_public_key(pem)
            hint = hashlib.sha256(
                public.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            ).hexdigest()
            verifier = sign_ec_key.Verifier(Path(path))
        except (ValueError, TypeError, AttributeError) as exc:  # not PEM, not EC, other curve
            raise InvalidOmsBundle(
                f"{path} is not a usable model-signing public key ({exc}); give the PEM public "
                "key of an EC P-256, P-384 or P-521 pair (`openssl ec -in key.pem -pubout`)",
                key=str(path),
            ) from None
        return cls(Path(path), hint, verifier)


def load_keys(paths: Iterable[Path]) -> tuple[OmsKey, ...]:
    return tuple(OmsKey.load(p) for p in paths)


@dataclass(frozen=True)
class SignedCheckpoint:
    """What an accepted bundle says: the file's SHA-256, who signed it, and our claim if any."""

    digest: Digest
    key_hint: str  # SHA-256 of the signer's PEM public key, as the bundle names it
    name: str  # the statement's subject name (informative only)
    claim: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": str(self.digest),
            "key_hint": self.key_hint,
            "name": self.name,
            "claim": self.claim,
        }


def _unusable(source: str, problem: str) -> InvalidOmsBundle:
    return InvalidOmsBundle(
        f"{source} is not a key-based model-signing bundle: {problem}; give the .sig file "
        "that `model_signing sign key` or `registry export-signature` wrote",
        source=source,
        problem=problem,
    )


def _field(obj: Any, name: str, kind: type, source: str, where: str) -> Any:
    value = obj.get(name) if isinstance(obj, dict) else None
    if not isinstance(value, kind):
        raise _unusable(source, f"{where}{name} is missing or not a {kind.__name__}")
    return value


@dataclass(frozen=True)
class ParsedBundle:
    parsed: dict[str, Any]
    hint: str | None
    statement: dict[str, Any]


def parse_bundle(data: bytes, source: str) -> ParsedBundle:
    """A bundle's parts, read strictly; ``InvalidOmsBundle`` when it is not a key-based
    model-signing bundle at all (nothing is verified here)."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise _unusable(source, f"{len(data)} bytes, over the limit of {MAX_BUNDLE_BYTES}")
    try:
        parsed = strict_loads(data)
    except StrictJSONError as exc:
        raise _unusable(source, f"it {exc}") from None
    if not isinstance(parsed, dict):
        raise _unusable(source, "not a JSON object")
    media = parsed.get("mediaType")
    if media != BUNDLE_MEDIA_TYPE:
        raise _unusable(source, f"media type {media!r}, not {BUNDLE_MEDIA_TYPE!r}")
    material = _field(parsed, "verificationMaterial", dict, source, "")
    if not isinstance(material.get("publicKey"), dict):
        raise _unusable(
            source,
            "it names no public key (a keyless or certificate bundle needs Sigstore's network "
            "or a PKI; sign with a key)",
        )
    hint = material["publicKey"].get("hint")
    envelope = _field(parsed, "dsseEnvelope", dict, source, "")
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise _unusable(source, f"DSSE payload type {envelope.get('payloadType')!r}")
    signatures = _field(envelope, "signatures", list, source, "dsseEnvelope.")
    if len(signatures) != 1:
        raise _unusable(source, f"{len(signatures)} DSSE signatures, not one")
    try:
        payload = base64.b64decode(_field(envelope, "payload", str, source, ""), validate=True)
        statement = strict_loads(payload)
    except (binascii.Error, StrictJSONError) as exc:
        raise _unusable(source, f"its DSSE payload is not base64 JSON ({exc})") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise _unusable(source, "its payload is not an in-toto v1 statement")
    return ParsedBundle(parsed, hint if isinstance(hint, str) else None, statement)


def _resource(statement: dict[str, Any], source: str) -> tuple[Digest, str]:
    """The one whole-file SHA-256 the statement signs, or a refusal naming what it signs instead."""
    kind = statement.get("predicateType")
    if kind != PREDICATE_TYPE:
        raise OmsSignatureRefused(
            "predicate_type",
            f"{source} is a model-signing statement of type {kind!r}; only {PREDICATE_TYPE} "
            "names its hashing, so re-sign with model-signing 1.0 or later",
            predicate_type=str(kind),
        )
    predicate = _field(statement, "predicate", dict, source, "")
    serialization = _field(predicate, "serialization", dict, source, "predicate.")
    method = serialization.get("method")
    if method == "shards":
        raise OmsSignatureRefused(
            "shard_manifest",
            f"{source} signs the file in shards of {_whole(serialization.get('shard_size'))} "
            "bytes; "
            "the registry anchors the SHA-256 of the whole file, so sign it whole: "
            "`model_signing sign key FILE` (file serialization, the default)",
            method=method,
        )
    if method != "files":
        raise OmsSignatureRefused(
            "shard_manifest",
            f"{source} uses serialization method {method!r}; sign the checkpoint file whole "
            "(method 'files')",
            method=str(method),
        )
    resources = _field(predicate, "resources", list, source, "predicate.")
    algorithms = {serialization.get("hash_type")} | {
        r.get("algorithm") for r in resources if isinstance(r, dict)
    }
    if algorithms - {"sha256"}:
        other = ", ".join(sorted(str(a) for a in algorithms - {"sha256"}))
        raise OmsSignatureRefused(
            "hash_algorithm",
            f"{source} hashes with {other}; the registry anchors the file's SHA-256, so sign "
            "it with SHA-256 (model-signing's default)",
            algorithm=other,
        )
    if len(resources) != 1:
        raise OmsSignatureRefused(
            "several_resources",
            f"{source} signs {len(resources)} files; sign the one checkpoint file "
            "(`model_signing sign key FILE`), not a folder",
            resources=len(resources),
        )
    value = resources[0].get("digest")
    if not isinstance(value, str) or HEX64.fullmatch(value) is None:
        raise _unusable(source, "its resource digest is not 64 hex characters")
    return Digest(value.lower()), str(resources[0].get("name", ""))


def _whole(value: object) -> object:
    """A number as people write it: the statement is a protobuf Struct, whose numbers are
    doubles (a shard size of 1024 arrives as 1024.0)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _signature_of(parsed: dict[str, Any], sign_sigstore_pb: Any) -> Any:
    """model_signing's ``Signature`` for a bundle already in memory (``Signature.read`` takes a
    path), with the same adjustments its reader makes for older bundles."""
    from sigstore_models.bundle import v1 as bundle_pb

    material = dict(parsed["verificationMaterial"])
    material.setdefault("tlogEntries", [])
    key = {k: v for k, v in material["publicKey"].items() if k not in ("rawBytes", "keyDetails")}
    key.setdefault("hint", None)
    material["publicKey"] = key
    return sign_sigstore_pb.Signature(
        bundle_pb.Bundle.from_dict({**parsed, "verificationMaterial": material})
    )


def verify_bundle(data: bytes, keys: Sequence[OmsKey], *, source: str) -> SignedCheckpoint:
    """The checkpoint digest a bundle signs with one of ``keys``; raises ``InvalidOmsBundle``
    for unusable input, ``OmsSignatureRefused`` (with ``problem``) for any other "no"."""
    bundle = parse_bundle(data, source)
    digest, name = _resource(bundle.statement, source)
    if not keys:
        raise OmsSignatureRefused(
            "no_trusted_keys",
            "no model-signing public key is trusted here; give --oms-key PUBKEY, or list the "
            "keys in REGISTRY_TRUSTED_OMS_KEYS",
        )
    if bundle.hint is None:
        raise OmsSignatureRefused(
            "untrusted_key",
            f"{source} does not name its signing key (an older model-signing format); re-sign "
            "it with model-signing 1.0 or later",
        )
    matching = [k for k in keys if k.hint == bundle.hint]
    if not matching:
        raise OmsSignatureRefused(
            "untrusted_key",
            f"{source} was signed by the key with hint {bundle.hint[:16]}…, which is none of "
            f"the {len(keys)} trusted key(s) ({', '.join(k.hint[:16] + '…' for k in keys)})",
            key_hint=bundle.hint,
        )
    _, sign_sigstore_pb, _ = _model_signing()
    from cryptography.exceptions import InvalidSignature

    key = matching[0]
    try:
        signature = _signature_of(bundle.parsed, sign_sigstore_pb)
        manifest = key.verifier.verify(signature)
    except (InvalidSignature, ValueError, KeyError, TypeError) as exc:
        raise OmsSignatureRefused(
            "bad_signature",
            f"{source}'s signature does not verify with the trusted key {key.hint[:16]}… "
            f"({type(exc).__name__}{': ' + str(exc) if str(exc) else ''}): the statement was "
            "changed after signing, or signed by another key with the same hint",
            key_hint=key.hint,
        ) from None
    # model_signing read the same verified payload; its manifest must say what ours says.
    signed = [rd.digest.digest_hex for rd in manifest.resource_descriptors()]
    if signed != [digest.hex]:
        raise OmsSignatureRefused(
            "bad_signature",
            f"{source}: model_signing reads resources {signed}, not the one digest {digest}",
        )
    claim = bundle.statement["predicate"].get(CLAIM_FIELD)
    subjects = bundle.statement.get("subject")
    subject = subjects[0] if isinstance(subjects, list) and subjects else {}
    return SignedCheckpoint(
        digest=digest,
        key_hint=key.hint,
        name=str(subject.get("name", name)) if isinstance(subject, dict) else name,
        claim=claim if isinstance(claim, dict) else None,
    )


def check_bundle(
    data: bytes, keys: Sequence[OmsKey], digest: Digest, *, source: str
) -> SignedCheckpoint:
    """``verify_bundle``, and the signed digest must be ``digest`` (the anchored one)."""
    signed = verify_bundle(data, keys, source=source)
    if signed.digest != digest:
        raise OmsSignatureRefused(
            "digest_mismatch",
            f"{source} signs {signed.digest}, not {digest}: it is a signature for other bytes",
            signed=str(signed.digest),
            expected=str(digest),
        )
    return signed


def require_signature(
    verdict: Verdict, bundles: Sequence[tuple[str, bytes]], keys: Sequence[OmsKey]
) -> Verdict:
    """``verdict`` if one of ``bundles`` (source, bytes) is a trusted signature of its digest,
    else a "policy" verdict that names the condition. Fails closed: an unusable bundle is a no."""
    if not verdict.verified:
        return verdict
    problems: list[str] = []
    for source, data in bundles:
        try:
            signed = check_bundle(data, keys, verdict.digest, source=source)
        except (InvalidOmsBundle, OmsSignatureRefused) as exc:
            problems.append(exc.message)
            continue
        return dataclasses.replace(
            verdict, detail=f"{verdict.detail}; model-signing bundle by key {signed.key_hint[:16]}…"
        )
    if not bundles:
        problems.append(
            f"no model-signing bundle is held for {verdict.digest.short}; upload one signed by a "
            "trusted key (POST /models/{digest}/oms-bundle, or `registry import-signature`)"
        )
    failure = "model-signing signature required: " + "; ".join(problems)
    return dataclasses.replace(
        verdict,
        verified=False,
        reason="policy",
        detail=failure,
        policy_failures=(*verdict.policy_failures, failure),
    )


def claim_of(verdict: Verdict) -> dict[str, str]:
    """Our registration claim, as strings (an in-toto predicate is a protobuf Struct, whose
    numbers are doubles: a block number or accuracy written as a number would come back as 12.0)."""
    record = verdict.record
    if record is None:
        raise ValueError("a claim needs the verdict's record")
    claim = {
        "chain": f"eip155:{verdict.chain_id}",
        "contract": verdict.contract,
        "registrant": record.registrant,
        "registrationBlock": str(record.registered_block),
        "accuracyBps": str(record.accuracy_bps),
        "testSetDigest": str(record.test_set_digest),
        "cardDigest": str(record.card_digest),
        "checkedBlock": str(verdict.checked_block),
    }
    if record.registration_tx:
        claim["registrationTx"] = record.registration_tx
    if record.parent is not None:
        claim["parent"] = str(record.parent)
    return claim


def sign_verdict(
    verdict: Verdict, private_key: Path, *, name: str, password: str | None = None
) -> bytes:
    """A model-signing bundle (Sigstore bundle, DSSE, in-toto v1 statement) over the verified
    digest as a single file hashed whole with SHA-256, carrying ``claim_of(verdict)``."""
    if not verdict.verified:
        raise ValueError("only a verified record is signed")
    sign_ec_key, _, signing = _model_signing()
    from in_toto_attestation.v1 import statement
    from model_signing import manifest
    from model_signing._hashing.hashing import Digest as MsDigest

    serialization = manifest.SerializationType.from_args(
        {"method": "files", "hash_type": "sha256", "allow_symlinks": False}
    )
    item = serialization.new_item(".", MsDigest("sha256", verdict.digest.raw))
    payload = signing.Payload(manifest.Manifest(name, [item], serialization))
    # The payload model_signing builds, with our claim beside its resources.
    predicate = {
        "serialization": serialization.serialization_parameters,
        "resources": [{"name": ".", "algorithm": "sha256", "digest": verdict.digest.hex}],
        CLAIM_FIELD: claim_of(verdict),
    }
    payload.statement = statement.Statement(
        subjects=list(payload.statement.pb.subject),
        predicate_type=PREDICATE_TYPE,
        predicate=predicate,
    )
    try:
        signer = sign_ec_key.Signer(Path(private_key), password)
    except (ValueError, TypeError, AttributeError) as exc:  # not PEM, encrypted, not EC
        raise InvalidInput(
            f"{private_key} is not a usable model-signing private key ({exc}); give an "
            "unencrypted PEM EC key on P-256, P-384 or P-521 "
            "(`openssl ecparam -name prime256v1 -genkey -noout -out key.pem`)",
            key=str(private_key),
        ) from None
    bundle: str = signer.sign(payload).bundle.to_json()
    return bundle.encode("utf-8")


@dataclass(frozen=True)
class SignatureRequirement:
    """The gate's model-signing condition (REGISTRY_REQUIRE_OMS_SIGNATURE): a verified verdict
    stays verified only if a held bundle is a trusted key's signature of its digest."""

    keys: tuple[OmsKey, ...]
    bundles: Callable[[Digest], Sequence[tuple[str, bytes]]]

    def __call__(self, verdict: Verdict) -> Verdict:
        if not verdict.verified:
            return verdict
        return require_signature(verdict, self.bundles(verdict.digest), self.keys)

    @classmethod
    def from_files(cls, bundle: Path, keys: Sequence[Path]) -> SignatureRequirement:
        """The condition for one bundle file and key files (``registry verify --oms-bundle``):
        both are read and the bundle parsed now, so unusable input is refused before the chain
        is asked."""
        if not keys:
            raise InvalidInput(
                "--oms-bundle needs the signer's public key: give --oms-key PUBKEY (or list "
                "trusted keys in REGISTRY_TRUSTED_OMS_KEYS)",
                missing=["oms_key"],
            )
        data = read_regular_file(bundle)
        parse_bundle(data, str(bundle))
        loaded = load_keys(keys)
        return cls(loaded, lambda _digest: [(str(bundle), data)])


def trusted_keys(settings: Settings) -> tuple[OmsKey, ...]:
    """The keys REGISTRY_TRUSTED_OMS_KEYS names, loaded once at start-up. A service that must
    require a signature but trusts no key, or cannot read one, does not start (fail closed)."""
    if settings.require_oms_signature and not settings.trusted_oms_keys:
        raise ConfigurationError(
            "REGISTRY_REQUIRE_OMS_SIGNATURE is on but REGISTRY_TRUSTED_OMS_KEYS names no key, so "
            "no model could ever be admitted; list the PEM public keys whose bundles are trusted",
            setting="trusted_oms_keys",
        )
    try:
        return load_keys(settings.trusted_oms_keys)
    except InvalidInput as exc:
        raise ConfigurationError(f"REGISTRY_TRUSTED_OMS_KEYS: {exc.message}") from None
    except OSError as exc:
        raise ConfigurationError(
            f"REGISTRY_TRUSTED_OMS_KEYS: cannot read {exc.filename}: {exc.strerror}"
        ) from None


def gate_requirement(
    settings: Settings, keys: tuple[OmsKey, ...], shelf: BundleShelf
) -> SignatureRequirement | None:
    """The gate's model-signing condition when REGISTRY_REQUIRE_OMS_SIGNATURE is on."""
    if not settings.require_oms_signature:
        return None
    return SignatureRequirement(keys, lambda digest: shelf.bundles(digest.hex))
