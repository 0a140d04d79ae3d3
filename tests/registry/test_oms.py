"""OpenSSF model-signing interop, both ways, with the real ``model_signing`` package.

Accept: bundles that ``model_signing`` itself writes (its signing API, key-based) are checked by
``registry.oms`` and by ``registry verify --oms-bundle``; untrusted keys, other bytes, a changed
statement, shard and folder manifests and other hash algorithms are refused by name. Emit:
``registry export-signature`` writes a bundle that ``model_signing verify key`` (its command
line, in a subprocess) accepts for the checkpoint file and rejects for a changed one. The command
line tests run against the session's anvil registry.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from apikit import make_card, make_checkpoint
from omskit import key_pair, ms_sign

from registry.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from registry.core.digest import Digest, digest_bytes
from registry.core.oms_bundles import BundleShelf
from registry.core.records import ModelRecord, Verdict
from registry.oms import (
    CLAIM_FIELD,
    InvalidOmsBundle,
    OmsSignatureRefused,
    check_bundle,
    load_keys,
    require_signature,
    sign_verdict,
    verify_bundle,
)

model_signing = pytest.importorskip("model_signing", reason="the [oms] extra is not installed")


def ms_verify_cli(model: Path, signature: Path, public: Path) -> subprocess.CompletedProcess[str]:
    """``model_signing verify key``: their command line, not ours."""
    argv = [sys.executable, "-m", "model_signing", "verify", "key", str(model)]
    argv += ["--signature", str(signature), "--public_key", str(public)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def with_statement(bundle: bytes, change: Any) -> bytes:
    """The bundle with its signed statement changed by ``change`` (the signature kept)."""
    parsed = json.loads(bundle)
    envelope = parsed["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    change(statement)
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return json.dumps(parsed).encode()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    trusted, trusted_pub = key_pair(tmp_path, "trusted")
    other, other_pub = key_pair(tmp_path, "other")
    return {"trusted": trusted, "trusted_pub": trusted_pub, "other": other, "other_pub": other_pub}


@pytest.fixture(scope="module")
def checkpoint_bytes() -> bytes:
    return make_checkpoint(seed=41)


@pytest.fixture
def model(tmp_path: Path, checkpoint_bytes: bytes) -> Path:
    path = tmp_path / "model.safetensors"
    path.write_bytes(checkpoint_bytes)
    return path


# --- accepting their bundles -----------------------------------------------------------------


def test_a_bundle_model_signing_wrote_for_one_file_gives_that_files_sha256(
    keys: dict[str, Path], model: Path, tmp_path: Path
) -> None:
    bundle = ms_sign(model, keys["trusted"], tmp_path / "model.sig")
    signed = check_bundle(
        bundle, load_keys([keys["trusted_pub"]]), digest_bytes(model.read_bytes()), source="sig"
    )
    assert signed.digest == digest_bytes(model.read_bytes())
    assert signed.name == "model.safetensors"
    assert signed.claim is None


def test_a_bundle_signed_by_a_key_nobody_trusts_is_refused_as_untrusted(
    keys: dict[str, Path], model: Path, tmp_path: Path
) -> None:
    bundle = ms_sign(model, keys["other"], tmp_path / "model.sig")
    with pytest.raises(OmsSignatureRefused) as caught:
        verify_bundle(bundle, load_keys([keys["trusted_pub"]]), source="sig")
    assert caught.value.problem == "untrusted_key"
    assert "none of the 1 trusted key" in caught.value.message


def test_a_bundle_over_other_bytes_is_refused_for_the_anchored_digest(
    keys: dict[str, Path], model: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.safetensors"
    other.write_bytes(make_checkpoint(seed=42))
    bundle = ms_sign(other, keys["trusted"], tmp_path / "other.sig")
    anchored = digest_bytes(model.read_bytes())
    with pytest.raises(OmsSignatureRefused) as caught:
        check_bundle(bundle, load_keys([keys["trusted_pub"]]), anchored, source="sig")
    assert caught.value.problem == "digest_mismatch"
    assert caught.value.details["signed"] == str(digest_bytes(other.read_bytes()))
    assert caught.value.details["expected"] == str(anchored)


def test_a_statement_changed_after_signing_is_refused_as_a_bad_signature(
    keys: dict[str, Path], model: Path, tmp_path: Path
) -> None:
    bundle = ms_sign(model, keys["trusted"], tmp_path / "model.sig")
    forged_digest = digest_bytes(b"another checkpoint").hex

    def point_elsewhere(statement: dict[str, Any]) -> None:
        statement["predicate"]["resources"][0]["digest"] = forged_digest

    forged = with_statement(bundle, point_elsewhere)
    with pytest.raises(OmsSignatureRefused) as caught:
        verify_bundle(forged, load_keys([keys["trusted_pub"]]), source="sig")
    assert caught.value.problem == "bad_signature"


def test_a_shard_manifest_is_refused_by_name(
    keys: dict[str, Path], model: Path, tmp_path: Path
) -> None:
    shards = model_signing.hashing.Config().use_shard_serialization(shard_size=4096)
    bundle = ms_sign(model, keys["trusted"], tmp_path / "model.sig", shards)
    with pytest.raises(OmsSignatureRefused) as caught:
        verify_bundle(bundle, load_keys([keys["trusted_pub"]]), source="sig")
    assert caught.value.problem == "shard_manifest"
    assert "shards of 4096 bytes" in caught.value.message


@pytest.mark.parametrize("algorithm", ["blake2", "blake3"])
def test_a_manifest_hashed_with_another_algorithm_is_refused_by_name(
    algorithm: str, keys: dict[str, Path], model: Path, tmp_path: Path
) -> None:
    other = model_signing.hashing.Config().use_file_serialization(hashing_algorithm=algorithm)
    bundle = ms_sign(model, keys["trusted"], tmp_path / "model.sig", other)
    with pytest.raises(OmsSignatureRefused) as caught:
        verify_bundle(bundle, load_keys([keys["trusted_pub"]]), source="sig")
    assert caught.value.problem == "hash_algorithm"
    assert caught.value.details["algorithm"] in {algorithm, f"{algorithm}b"}  # blake2 is BLAKE2b


def test_a_folder_of_several_files_is_refused_as_not_one_checkpoint(
    keys: dict[str, Path], checkpoint_bytes: bytes, tmp_path: Path
) -> None:
    folder = tmp_path / "model-dir"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(checkpoint_bytes)
    (folder / "model_card.json").write_bytes(make_card(checkpoint_bytes))
    bundle = ms_sign(folder, keys["trusted"], tmp_path / "dir.sig")
    with pytest.raises(OmsSignatureRefused) as caught:
        verify_bundle(bundle, load_keys([keys["trusted_pub"]]), source="sig")
    assert caught.value.problem == "several_resources"
    assert caught.value.details["resources"] == 2


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[]", b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}'],
)
def test_what_is_not_a_key_based_bundle_is_unusable_input(
    data: bytes, keys: dict[str, Path]
) -> None:
    with pytest.raises(InvalidOmsBundle):
        verify_bundle(data, load_keys([keys["trusted_pub"]]), source="sig")


def test_a_file_that_is_no_public_key_is_unusable_input(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key\n")
    with pytest.raises(InvalidOmsBundle) as caught:
        load_keys([junk])
    assert caught.value.details["key"] == str(junk)


def verified(digest: Digest) -> Verdict:
    record = ModelRecord(
        digest=digest,
        registrant="0x" + "ab" * 20,
        registered_at=1_700_000_000,
        registered_block=12,
        accuracy_bps=9_250,
        test_set_digest=digest_bytes(b"test split"),
        card_digest=digest_bytes(b"card"),
        parent=None,
        registration_tx="0x" + "cd" * 32,
    )
    return Verdict(True, "verified", digest, 31337, "0x" + "ef" * 20, 14, record, "registered")


def test_without_a_trusted_bundle_a_verified_verdict_becomes_a_policy_refusal(
    keys: dict[str, Path], model: Path, tmp_path: Path
) -> None:
    verdict = verified(digest_bytes(model.read_bytes()))
    trusted = load_keys([keys["trusted_pub"]])
    none = require_signature(verdict, [], trusted)
    assert (none.verified, none.reason) == (False, "policy")
    assert "no model-signing bundle is held" in none.detail
    untrusted = ms_sign(model, keys["other"], tmp_path / "other.sig")
    refused = require_signature(verdict, [("other.sig", untrusted)], trusted)
    assert not refused.verified and "none of the 1 trusted key" in refused.policy_failures[0]
    good = ms_sign(model, keys["trusted"], tmp_path / "good.sig")
    kept = require_signature(verdict, [("other.sig", untrusted), ("good.sig", good)], trusted)
    assert kept.verified and kept.reason == "verified"


def test_the_shelf_returns_only_bundles_whose_bytes_still_match_their_name(
    tmp_path: Path,
) -> None:
    shelf = BundleShelf(tmp_path / "shelf")
    digest = digest_bytes(b"checkpoint").hex
    name, new = shelf.add(digest, b'{"bundle": 1}')
    assert new and shelf.add(digest, b'{"bundle": 1}') == (name, False)
    assert shelf.bundles(digest) == [(f"{name}.sig", b'{"bundle": 1}')]
    path = shelf.root / digest[:2] / digest / f"{name}.sig"
    path.chmod(0o644)
    path.write_bytes(b'{"bundle": 2}')
    assert shelf.bundles(digest) == []


# --- emitting ours ---------------------------------------------------------------------------


def test_our_bundle_carries_the_registration_and_model_signing_accepts_it(
    keys: dict[str, Path], model: Path
) -> None:
    verdict = verified(digest_bytes(model.read_bytes()))
    bundle = sign_verdict(verdict, keys["trusted"], name="model.safetensors")
    signature = model.parent / "ours.sig"
    signature.write_bytes(bundle)
    result = ms_verify_cli(model, signature, keys["trusted_pub"])
    assert result.returncode == 0, result.stderr
    # Their Python API too, guessing the hashing from the bundle as it does by default.
    model_signing.verifying.Config().use_elliptic_key_verifier(
        public_key=keys["trusted_pub"]
    ).verify(model, signature)
    signed = verify_bundle(bundle, load_keys([keys["trusted_pub"]]), source="ours")
    assert signed.claim == {
        "chain": "eip155:31337",
        "contract": "0x" + "ef" * 20,
        "registrant": "0x" + "ab" * 20,
        "registrationBlock": "12",
        "registrationTx": "0x" + "cd" * 32,
        "accuracyBps": "9250",
        "testSetDigest": str(digest_bytes(b"test split")),
        "cardDigest": str(digest_bytes(b"card")),
        "checkedBlock": "14",
    }
    assert CLAIM_FIELD == "registration"


def test_model_signing_rejects_our_bundle_for_a_changed_file_and_another_key(
    keys: dict[str, Path], model: Path
) -> None:
    bundle = sign_verdict(verified(digest_bytes(model.read_bytes())), keys["trusted"], name="m")
    signature = model.parent / "ours.sig"
    signature.write_bytes(bundle)
    assert ms_verify_cli(model, signature, keys["other_pub"]).returncode == 1
    changed = bytearray(model.read_bytes())
    changed[-1] ^= 1
    model.chmod(0o644)
    model.write_bytes(bytes(changed))
    result = ms_verify_cli(model, signature, keys["trusted_pub"])
    assert result.returncode == 1
    assert "Hash mismatch" in result.stderr


def test_only_a_verified_record_is_signed(keys: dict[str, Path], model: Path) -> None:
    verdict = replace(verified(digest_bytes(model.read_bytes())), verified=False, reason="revoked")
    with pytest.raises(ValueError, match="only a verified record"):
        sign_verdict(verdict, keys["trusted"], name="m")


# --- the command line, against the session's anvil registry ---------------------------------


@pytest.fixture
def chain(anvil: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    monkeypatch.setenv("REGISTRY_PRIVATE_KEY", anvil.keys[0])
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "registry-data"))
    monkeypatch.delenv("REGISTRY_TRUSTED_OMS_KEYS", raising=False)
    return ("--rpc-url", anvil.endpoint, "--contract", anvil.client.address)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def verify_with_bundle(
    capsys: pytest.CaptureFixture[str],
    before: tuple[str, ...],
    model: Path,
    bundle: Path,
    key: Path,
) -> tuple[int, str, str]:
    """``registry <before> verify MODEL --oms-bundle BUNDLE --oms-key KEY``."""
    argv = ["verify", str(model), "--oms-bundle", str(bundle), "--oms-key", str(key)]
    return run(capsys, *before, *argv)


def register(capsys: pytest.CaptureFixture[str], chain: tuple[str, ...], model: Path) -> Digest:
    card = model.parent / "model_card.json"
    card.write_bytes(make_card(model.read_bytes()))
    code, _, err = run(capsys, *chain, "register", str(model), "--card", str(card))
    assert code == EXIT_OK, err
    return digest_bytes(model.read_bytes())


@pytest.mark.anvil
def test_cli_verify_accepts_a_model_signing_bundle_over_the_registered_file(
    chain: tuple[str, ...],
    keys: dict[str, Path],
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    register(capsys, chain, model)
    signature = tmp_path / "model.sig"
    ms_sign(model, keys["trusted"], signature)
    code, out, err = verify_with_bundle(capsys, chain, model, signature, keys["trusted_pub"])
    assert code == EXIT_OK, err
    assert out.startswith("VERIFIED") and "model-signing bundle by key" in out


@pytest.mark.anvil
def test_cli_verify_refuses_untrusted_mismatching_shard_and_other_hash_bundles(
    chain: tuple[str, ...],
    keys: dict[str, Path],
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    register(capsys, chain, model)
    other_file = tmp_path / "other.safetensors"
    other_file.write_bytes(make_checkpoint(seed=43))
    hashing = model_signing.hashing.Config()
    bundles = {
        "none of the 1 trusted key": ms_sign(model, keys["other"], tmp_path / "a.sig"),
        "it is a signature for other bytes": ms_sign(
            other_file, keys["trusted"], tmp_path / "b.sig"
        ),
        "shards of 1024 bytes": ms_sign(
            model,
            keys["trusted"],
            tmp_path / "c.sig",
            hashing.use_shard_serialization(shard_size=1024),
        ),
        "hashes with blake2": ms_sign(
            model,
            keys["trusted"],
            tmp_path / "d.sig",
            model_signing.hashing.Config().use_file_serialization(hashing_algorithm="blake2"),
        ),
    }
    for n, (expected, bundle) in enumerate(bundles.items()):
        signature = tmp_path / f"case{n}.sig"
        signature.write_bytes(bundle)
        json_chain = (*chain, "--json")
        code, out, _ = verify_with_bundle(capsys, json_chain, model, signature, keys["trusted_pub"])
        answer = json.loads(out)
        assert code == EXIT_FAILED, expected
        assert (answer["verified"], answer["reason"]) == (False, "policy"), expected
        assert expected in answer["detail"]


@pytest.mark.anvil
def test_cli_verify_with_an_unusable_bundle_or_no_key_is_bad_input(
    chain: tuple[str, ...],
    keys: dict[str, Path],
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    junk = tmp_path / "junk.sig"
    junk.write_text("{}")
    code, _, err = verify_with_bundle(capsys, chain, model, junk, keys["trusted_pub"])
    assert code == EXIT_USAGE and "not a key-based model-signing bundle" in err
    code, _, err = run(capsys, *chain, "verify", str(model), "--oms-bundle", str(junk))
    assert code == EXIT_USAGE and "--oms-key" in err
    code, _, err = run(capsys, *chain, "verify", str(model), "--oms-key", str(keys["trusted_pub"]))
    assert code == EXIT_USAGE and "--oms-bundle" in err


@pytest.mark.anvil
def test_cli_export_signature_writes_what_model_signing_verify_key_accepts(
    chain: tuple[str, ...],
    keys: dict[str, Path],
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    anvil: Any,
) -> None:
    digest = register(capsys, chain, model)
    signature = tmp_path / "export.sig"
    argv = ["--json", "export-signature", str(digest), "--key", str(keys["trusted"])]
    code, out, err = run(capsys, *chain, *argv, "--out", str(signature))
    assert code == EXIT_OK, err
    answer = json.loads(out)
    record = anvil.client.get(digest)
    assert answer["claim"]["registrationTx"] == record.registration_tx
    assert answer["claim"]["accuracyBps"] == str(record.accuracy_bps)
    assert answer["claim"]["contract"] == anvil.client.address
    result = ms_verify_cli(model, signature, keys["trusted_pub"])
    assert result.returncode == 0, result.stderr
    # and our own verify takes it back
    code, out, err = verify_with_bundle(capsys, chain, model, signature, keys["trusted_pub"])
    assert code == EXIT_OK, err
    # a tampered copy of the file fails their check
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(model.read_bytes()[:-1] + bytes([model.read_bytes()[-1] ^ 1]))
    assert ms_verify_cli(tampered, signature, keys["trusted_pub"]).returncode == 1
    # a signature is never overwritten
    code, _, err = run(capsys, *chain, *argv, "--out", str(signature))
    assert code == EXIT_USAGE and "never overwritten" in err


@pytest.mark.anvil
def test_cli_export_signature_refuses_an_unregistered_or_revoked_digest(
    chain: tuple[str, ...],
    keys: dict[str, Path],
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    unknown = digest_bytes(b"never registered")
    argv = ["export-signature", "--key", str(keys["trusted"])]
    code, out, _ = run(capsys, *chain, *argv, str(unknown), "--out", str(tmp_path / "u.sig"))
    assert code == EXIT_FAILED and "NOT SIGNED" in out and "[unknown]" in out
    assert not (tmp_path / "u.sig").exists()
    digest = register(capsys, chain, model)
    code, _, err = run(capsys, *chain, "revoke", str(digest), "--reason", "safety-issue")
    assert code == EXIT_OK, err
    code, out, _ = run(capsys, *chain, *argv, str(digest), "--out", str(tmp_path / "r.sig"))
    assert code == EXIT_FAILED and "[revoked]" in out
    assert not (tmp_path / "r.sig").exists()


@pytest.mark.anvil
def test_cli_import_signature_keeps_only_a_trusted_bundle_of_a_registered_digest(
    chain: tuple[str, ...],
    keys: dict[str, Path],
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shelf = BundleShelf.in_data_dir(tmp_path / "registry-data")
    digest = digest_bytes(model.read_bytes())
    signature = tmp_path / "model.sig"
    ms_sign(model, keys["trusted"], signature)
    key = ("--oms-key", str(keys["trusted_pub"]))
    code, out, _ = run(capsys, *chain, "import-signature", str(signature), *key)
    assert code == EXIT_FAILED and "NOT IMPORTED" in out  # not registered yet
    assert shelf.bundles(digest.hex) == []
    register(capsys, chain, model)
    untrusted = tmp_path / "untrusted.sig"
    ms_sign(model, keys["other"], untrusted)
    code, _, err = run(capsys, *chain, "import-signature", str(untrusted), *key)
    assert code == EXIT_FAILED and "none of the 1 trusted key" in err
    code, out, err = run(capsys, *chain, "import-signature", str(signature), *key)
    assert code == EXIT_OK, err
    assert [data for _, data in shelf.bundles(digest.hex)] == [signature.read_bytes()]


def test_without_the_oms_extra_the_commands_say_what_to_install(
    keys: dict[str, Path],
    model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    signature = tmp_path / "model.sig"
    ms_sign(model, keys["trusted"], signature)
    # model_signing as a base install lacks it: importing it fails.
    for name in [m for m in sys.modules if m == "model_signing" or m.startswith("model_signing.")]:
        monkeypatch.setitem(sys.modules, name, None)
    memory = ("--rpc-url", "memory")
    code, _, err = verify_with_bundle(capsys, memory, model, signature, keys["trusted_pub"])
    assert code == EXIT_USAGE
    assert "pip install '.[oms]'" in err
