"""Evaluator attestations: the policy's counting (pure), the contract's refusals through the
client, the gate's verdicts on the in-process chain, and the `registry` commands on anvil.

The policy tests build records and attestations by hand: counting is a pure function. Everything
else runs on a real chain: eth-tester for the client and the gate (the session's snapshot is
reverted after each test), the session's anvil node for the command line (a command builds its
own client from flags, so the in-process chain, which dies with its client, cannot serve it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from chainkit import CARD, TEST_SET, digest, request
from hypothesis import given
from hypothesis import strategies as st

from registry.chain import reverts
from registry.chain.abi import RegisteredEvent
from registry.chain.attestations import Attestations
from registry.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from registry.core.attestations import Attestation
from registry.core.digest import Digest, digest_file
from registry.core.policy import Policy
from registry.core.records import ModelRecord, RegisterRequest, RevocationReason, Role
from registry.errors import ChainError, NotVerified
from registry.gate import Gate
from registry.verify import verify_digest

OWN_TEST_SET = Digest(hashlib.sha256(b"the evaluator's own test split").hexdigest())
REPORT = Digest(hashlib.sha256(b"evaluation report").hexdigest())
EVALUATORS = [f"0x{i:040x}" for i in range(1, 5)]


# --- the policy, pure ---------------------------------------------------------------------------


def record(accuracy_bps: int = 9_500, label: str = "m") -> ModelRecord:
    return ModelRecord(
        digest=digest(label),
        registrant="0x" + "ab" * 20,
        registered_at=1_700_000_000,
        registered_block=3,
        accuracy_bps=accuracy_bps,
        test_set_digest=TEST_SET,
        card_digest=CARD,
        parent=None,
    )


def attestation(
    evaluator: str,
    accuracy_bps: int,
    *,
    test_set: Digest = TEST_SET,
    withdrawn: bool = False,
    label: str = "m",
) -> Attestation:
    return Attestation(
        digest=digest(label),
        evaluator=evaluator,
        accuracy_bps=accuracy_bps,
        test_set_digest=test_set,
        report_digest=None,
        attested_at=1_700_000_100,
        attested_block=5,
        withdrawn_at=1_700_000_200 if withdrawn else None,
    )


def test_policy_counts_a_standing_attestation_at_the_minimum_within_the_tolerance() -> None:
    policy = Policy(9_000, min_attestations=1, trusted_evaluators=(EVALUATORS[0],))
    count = policy.count_attestations(record(), {EVALUATORS[0]: attestation(EVALUATORS[0], 9_450)})
    assert count.met and count.counted == (EVALUATORS[0],) and count.not_counted == ()
    assert (
        policy.attestation_failures(record(), {EVALUATORS[0]: attestation(EVALUATORS[0], 9_450)})
        == ()
    )


def test_policy_names_why_each_trusted_evaluator_did_not_count() -> None:
    policy = Policy(
        9_000,
        min_attestations=2,
        trusted_evaluators=tuple(EVALUATORS),
        attestation_tolerance_bps=100,
    )
    found = {
        EVALUATORS[1]: attestation(EVALUATORS[1], 9_500, withdrawn=True),
        EVALUATORS[2]: attestation(EVALUATORS[2], 8_900, test_set=OWN_TEST_SET),
        EVALUATORS[3]: attestation(EVALUATORS[3], 9_300),  # 200 bps below the claimed 95.00 %
    }
    count = policy.count_attestations(record(9_500), found)

    assert not count.met and count.counted == ()
    assert [(n.evaluator, n.why) for n in count.not_counted] == [
        (EVALUATORS[0], "none"),
        (EVALUATORS[1], "withdrawn"),
        (EVALUATORS[2], "below minimum"),
        (EVALUATORS[3], "outside tolerance"),
    ]
    (failure,) = policy.attestation_failures(record(9_500), found)
    assert failure.startswith("too few trusted attestations: 2 needed, 0 found (")
    assert "attested 89.00 %, below the clinic's minimum of 90.00 %" in failure
    assert "200 bps from the claimed 95.00 % (tolerance 100 bps)" in failure


def test_policy_applies_the_tolerance_only_on_the_anchored_test_set() -> None:
    policy = Policy(9_000, min_attestations=1, trusted_evaluators=(EVALUATORS[0],))
    far_but_own = attestation(EVALUATORS[0], 9_050, test_set=OWN_TEST_SET)
    far_on_anchored = attestation(EVALUATORS[0], 9_050)

    assert policy.count_attestations(record(9_900), {EVALUATORS[0]: far_but_own}).met
    count = policy.count_attestations(record(9_900), {EVALUATORS[0]: far_on_anchored})
    assert not count.met and count.not_counted[0].why == "outside tolerance"


def test_policy_ignores_untrusted_evaluators_and_other_checkpoints() -> None:
    policy = Policy(min_attestations=1, trusted_evaluators=(EVALUATORS[0],))
    found = {
        EVALUATORS[1]: attestation(EVALUATORS[1], 9_500),  # not trusted here
        EVALUATORS[0]: attestation(EVALUATORS[0], 9_500, label="another model"),
    }
    count = policy.count_attestations(record(), found)
    assert not count.met
    assert [(n.evaluator, n.why) for n in count.not_counted] == [(EVALUATORS[0], "none")]


def test_policy_counts_an_evaluator_listed_twice_once() -> None:
    evaluator = "0x" + "cd" * 20
    policy = Policy(min_attestations=2, trusted_evaluators=(evaluator, "0x" + "CD" * 20))
    assert policy.trusted_evaluators == (evaluator,)
    count = policy.count_attestations(record(), {evaluator: attestation(evaluator, 9_500)})
    assert not count.met and count.to_dict()["found"] == 1


def test_policy_requiring_attestations_without_trusted_evaluators_refuses_saying_so() -> None:
    (failure,) = Policy(min_attestations=1).attestation_failures(record(), {})
    assert "1 needed, 0 found" in failure and "REGISTRY_TRUSTED_EVALUATORS" in failure


def test_policy_without_attestations_required_asks_nothing() -> None:
    assert Policy(trusted_evaluators=(EVALUATORS[0],)).attestation_failures(record(), {}) == ()


@given(
    k=st.integers(0, 5),
    minimum=st.integers(0, 10_000),
    tolerance=st.integers(0, 10_000),
    claimed=st.integers(0, 10_000),
    attested=st.lists(
        st.one_of(
            st.none(),
            st.tuples(st.integers(0, 10_000), st.booleans(), st.booleans()),
        ),
        min_size=4,
        max_size=4,
    ),
)
def test_policy_places_every_trusted_evaluator_once_and_meets_k_exactly_when_k_count(
    k: int,
    minimum: int,
    tolerance: int,
    claimed: int,
    attested: list[tuple[int, bool, bool] | None],
) -> None:
    policy = Policy(
        minimum,
        min_attestations=k,
        trusted_evaluators=tuple(EVALUATORS),
        attestation_tolerance_bps=tolerance,
    )
    found: dict[str, Attestation | None] = {}
    for evaluator, made in zip(EVALUATORS, attested, strict=True):
        if made is not None:
            accuracy, anchored, withdrawn = made
            test_set = TEST_SET if anchored else OWN_TEST_SET
            found[evaluator] = attestation(
                evaluator, accuracy, test_set=test_set, withdrawn=withdrawn
            )
    count = policy.count_attestations(record(claimed), found)

    placed = list(count.counted) + [n.evaluator for n in count.not_counted]
    assert sorted(placed) == sorted(EVALUATORS)
    for evaluator in count.counted:
        a = found[evaluator]
        assert a is not None and not a.withdrawn and a.accuracy_bps >= minimum
        if a.test_set_digest == TEST_SET:
            assert abs(a.accuracy_bps - claimed) <= tolerance
    assert count.met == (len(count.counted) >= k)
    assert (policy.attestation_failures(record(claimed), found) == ()) == (k == 0 or count.met)


# --- the contract, through the client (eth-tester) ----------------------------------------------


def registered(memory: Any, label: str, accuracy_bps: int = 9_500) -> Digest:
    memory.client.register(request(label, accuracy_bps))
    return digest(label)


def stored_slot(memory: Any, model: Digest, evaluator: str) -> Any:
    slots, _ = Attestations(memory.reader()).stored(model, [evaluator])
    return slots[0]


def test_attest_anchors_the_measurement_with_its_digests_in_the_event(memory: Any) -> None:
    model = registered(memory, "attested")
    evaluator = memory.other(1, Role.EVALUATOR)

    made = Attestations(evaluator).attest(model, 9_450, TEST_SET, REPORT)

    (name, args), *_ = memory.events(made.tx_hash)
    assert name == "AttestationMade"
    assert (args["digest"], args["evaluator"], args["accuracyBps"]) == (
        model.raw,
        evaluator.account.address,
        9_450,
    )
    assert (args["testSetDigest"], args["reportDigest"]) == (TEST_SET.raw, REPORT.raw)
    assert args["attestedAt"] == made.attested_at == memory.timestamp(made.tx_hash)
    read = Attestations(memory.reader()).of(model, [evaluator.account.address])
    assert read == {evaluator.account.address.lower(): made}
    assert made.report_digest == REPORT and not made.withdrawn


def test_attesting_twice_reverts_already_attested_and_changes_nothing(memory: Any) -> None:
    model = registered(memory, "twice")
    evaluator = memory.other(1, Role.EVALUATOR)
    first = Attestations(evaluator).attest(model, 9_450, TEST_SET)

    with pytest.raises(reverts.AlreadyAttested) as info:
        Attestations(evaluator).attest(model, 9_900, OWN_TEST_SET)

    assert (info.value.digest, info.value.evaluator) == (model, evaluator.account.address)
    assert info.value.attested_at == first.attested_at
    assert Attestations(memory.reader()).all(model) == [first]


def test_a_registrant_attesting_its_own_model_reverts_self_attestation(memory: Any) -> None:
    model = registered(memory, "own")
    memory.client.grant_role(Role.EVALUATOR, memory.admin)  # the registrant, now an evaluator too

    with pytest.raises(reverts.SelfAttestation) as info:
        Attestations(memory.client).attest(model, 9_999, TEST_SET)

    assert (info.value.digest, info.value.evaluator) == (model, memory.admin)
    assert not stored_slot(memory, model, memory.admin).exists
    assert Attestations(memory.reader()).all(model) == []


def test_attesting_an_unknown_model_reverts_unknown_model(memory: Any) -> None:
    evaluator = memory.other(1, Role.EVALUATOR)
    with pytest.raises(reverts.UnknownModel) as info:
        Attestations(evaluator).attest(digest("never registered"), 9_000, TEST_SET)
    assert info.value.digest == digest("never registered")


def test_attesting_a_revoked_model_reverts_revoked_model_and_changes_nothing(memory: Any) -> None:
    model = registered(memory, "withdrawn model")
    revoked = memory.client.revoke(model, RevocationReason.SAFETY_ISSUE).revocation
    evaluator = memory.other(1, Role.EVALUATOR)

    with pytest.raises(reverts.RevokedModel) as info:
        Attestations(evaluator).attest(model, 9_000, TEST_SET)

    assert revoked is not None
    assert (info.value.digest, info.value.revoked_at) == (model, revoked.revoked_at)
    assert not stored_slot(memory, model, evaluator.account.address).exists


def test_attesting_without_the_evaluator_role_reverts_missing_role(memory: Any) -> None:
    model = registered(memory, "no role")
    outsider = memory.other(2)
    with pytest.raises(reverts.MissingRole) as info:
        Attestations(outsider).attest(model, 9_000, TEST_SET)
    assert (info.value.account, info.value.role) == (outsider.account.address, "evaluator")


def test_a_withdrawn_attestation_is_marked_and_may_be_replaced_once(memory: Any) -> None:
    model = registered(memory, "replaced")
    evaluator = memory.other(1, Role.EVALUATOR)
    first = Attestations(evaluator).attest(model, 9_450, TEST_SET, REPORT)

    withdrawal = Attestations(evaluator).withdraw(model)

    ((name, args),) = memory.events(withdrawal.tx_hash)
    assert name == "AttestationRevoked"
    assert (args["digest"], args["evaluator"]) == (model.raw, evaluator.account.address)
    assert withdrawal.attestation.withdrawn_at == args["revokedAt"]
    with pytest.raises(reverts.NoAttestation) as info:
        Attestations(evaluator).withdraw(model)
    assert (info.value.digest, info.value.evaluator) == (model, evaluator.account.address)

    second = Attestations(evaluator).attest(model, 9_500, OWN_TEST_SET)
    listed = Attestations(memory.reader()).all(model)
    assert [(a.accuracy_bps, a.withdrawn) for a in listed] == [(9_450, True), (9_500, False)]
    assert listed[0].test_set_digest == first.test_set_digest and listed[1] == second


# --- the gate and the verdict (eth-tester) ------------------------------------------------------


def gate_for(memory: Any, *evaluators: str, k: int = 1, minimum: int = 9_000) -> Gate:
    policy = Policy(minimum, min_attestations=k, trusted_evaluators=evaluators)
    return Gate(memory.client, policy, validity_ttl_s=0)


def test_the_gate_refuses_without_a_trusted_attestation_and_admits_after_one(memory: Any) -> None:
    from apikit import make_checkpoint

    from registry.core.digest import digest_bytes

    data = make_checkpoint(seed=41)
    model = digest_bytes(data)
    memory.client.register(RegisterRequest(model, 9_500, TEST_SET, CARD))
    evaluator = memory.other(1, Role.EVALUATOR)
    gate = gate_for(memory, evaluator.account.address)

    with pytest.raises(NotVerified) as info:
        gate.admit(data)
    verdict = info.value.verdict
    assert (verdict.reason, verdict.policy_failures) == (
        "policy",
        (
            "too few trusted attestations: 1 needed, 0 found "
            f"({evaluator.account.address}: no attestation)",
        ),
    )
    assert not gate.loaded(model)

    Attestations(evaluator).attest(model, 9_480, TEST_SET)

    admitted = gate.admit(data).verdict
    assert admitted.verified and admitted.detail.endswith(
        f"; attested by {evaluator.account.address}"
    )
    assert gate.loaded(model)


def test_a_withdrawn_attestation_closes_the_gate_again(memory: Any) -> None:
    model = registered(memory, "closing")
    evaluator = memory.other(1, Role.EVALUATOR)
    gate = gate_for(memory, evaluator.account.address)
    Attestations(evaluator).attest(model, 9_500, TEST_SET)
    assert gate.verdict(model).verified

    Attestations(evaluator).withdraw(model)

    verdict = gate.verdict(model)
    assert verdict.reason == "policy"
    assert "its attestation was withdrawn" in verdict.detail


def test_only_trusted_evaluators_count_and_the_verdict_says_why_each_did_not(memory: Any) -> None:
    model = registered(memory, "picky", accuracy_bps=9_500)
    low, far, untrusted = (memory.other(i, Role.EVALUATOR) for i in (1, 2, 3))
    Attestations(low).attest(model, 8_000, OWN_TEST_SET)
    Attestations(far).attest(model, 9_100, TEST_SET)  # 400 bps under the claim
    Attestations(untrusted).attest(model, 9_500, TEST_SET)
    policy = Policy(
        9_000,
        min_attestations=1,
        trusted_evaluators=(low.account.address, far.account.address),
        attestation_tolerance_bps=100,
    )

    verdict = verify_digest(memory.client, model, policy)

    assert not verdict.verified and verdict.reason == "policy"
    (failure,) = verdict.policy_failures
    assert failure.startswith("too few trusted attestations: 1 needed, 0 found (")
    assert f"{low.account.address}: attested 80.00 %, below the clinic's minimum" in failure
    assert f"{far.account.address}: attested 91.00 % on the anchored test set, 400 bps" in failure
    assert untrusted.account.address not in failure
    wider = Policy(
        9_000,
        min_attestations=1,
        trusted_evaluators=(far.account.address,),
        attestation_tolerance_bps=400,
    )
    assert verify_digest(memory.client, model, wider).verified


def test_a_verdict_without_attestations_required_never_reads_them(memory: Any) -> None:
    model = registered(memory, "plain")
    # A client whose logs start after the registration would fail any attestation read
    # (see the next test); with k = 0 the verdict does not make one.
    verdict = verify_digest(memory.client, model, Policy(trusted_evaluators=(EVALUATORS[0],)))
    assert verdict.verified


def test_an_attestation_whose_event_the_node_lacks_refuses_fail_closed(memory: Any) -> None:
    model = registered(memory, "pruned")
    evaluator = memory.other(1, Role.EVALUATOR)
    Attestations(evaluator).attest(model, 9_500, TEST_SET)
    memory.mine(1)
    # A client that believes the contract was deployed after the attestation's block reads
    # storage that names an event its log queries never reach, as on a node that pruned it.
    blind = memory.reader(deployment_block=memory.client.head())
    (log,) = memory.client.events.logs([blind.abi.registered_topic, model.raw], 0)
    blind.events.remember(RegisteredEvent.from_log(log))  # the registration is still known
    gate = Gate(blind, gate_for(memory, evaluator.account.address).policy, validity_ttl_s=0)

    with pytest.raises(ChainError) as info:
        gate.verdict(model)
    assert "holds no AttestationMade event" in info.value.message
    assert gate.fresh_verdict(model) is None


def test_where_attestations_cannot_be_read_a_policy_requiring_them_fails() -> None:
    why = "a proof bundle does not show attestations"
    assert Policy(min_attestations=2).attestations_unreadable(why) == (
        f"too few trusted attestations: 2 needed, 0 found ({why})",
    )
    assert Policy().attestations_unreadable(why) == ()


# --- the command line (anvil) --------------------------------------------------------------------


@pytest.fixture
def registry_cli(
    anvil: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    """Run `registry` against the session's anvil registry (reverted after the test) signing
    with dev key ``key`` (0: the admin, registrar and revoker); ``(exit code, stdout, stderr)``."""
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "registry-data"))
    for name in ("REGISTRY_MIN_ATTESTATIONS", "REGISTRY_TRUSTED_EVALUATORS"):
        monkeypatch.delenv(name, raising=False)
    flags = ("--rpc-url", anvil.endpoint, "--contract", anvil.client.address)

    def run(*argv: str, key: int = 0) -> tuple[int, str, str]:
        monkeypatch.setenv("REGISTRY_PRIVATE_KEY", anvil.keys[key])
        code = main([*flags, *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def show_json(run: Any, model: Digest) -> dict[str, Any]:
    code, out, err = run("--json", "show", str(model))
    assert code == EXIT_OK, err
    shown: dict[str, Any] = json.loads(out)
    return shown


@pytest.mark.anvil
def test_cli_grants_evaluator_then_attests_shows_and_withdraws(
    registry_cli: Any, anvil: Any, tmp_path: Path
) -> None:
    run = registry_cli
    evaluator = anvil.address(1)
    model = registered(anvil, "cli model", accuracy_bps=9_500)
    report = tmp_path / "report.json"
    report.write_bytes(b'{"accuracy_bps": 9450}\n')

    assert run("roles", "grant", "evaluator", evaluator)[0] == EXIT_OK
    assert run("roles", "show", "evaluator", evaluator)[0] == EXIT_OK
    code, out, err = run(
        "--json",
        "attest",
        str(model),
        "--accuracy-bps",
        "9450",
        "--test-set-digest",
        str(TEST_SET),
        "--report",
        str(report),
        key=1,
    )

    assert code == EXIT_OK, err
    made = json.loads(out)
    assert (made["evaluator"], made["accuracy_bps"], made["test_set"]) == (
        evaluator,
        9_450,
        "anchored",
    )
    assert made["report_digest"] == str(digest_file(report)) and made["withdrawn"] is False
    (listed,) = show_json(run, model)["attestations"]
    assert listed == made
    code, out, _ = run("show", str(model))
    assert f"attestations 1\n    {evaluator}  94.50 % on the anchored test set" in out

    code, out, err = run("attest", "revoke", str(model), key=1)
    assert code == EXIT_OK, err
    assert out.startswith(f"withdrew the attestation of {model} by {evaluator}")
    (listed,) = show_json(run, model)["attestations"]
    assert listed["withdrawn"] is True and listed["withdrawn_at"] is not None
    assert "WITHDRAWN at" in run("show", str(model))[1]


@pytest.mark.anvil
def test_cli_refuses_a_second_attestation_the_registrants_own_and_unknown_or_revoked_models(
    registry_cli: Any, anvil: Any
) -> None:
    run = registry_cli
    model = registered(anvil, "refusals")
    revoked = registered(anvil, "revoked before")
    anvil.client.revoke(revoked, RevocationReason.SAFETY_ISSUE)
    for index in (0, 1):  # the registrant (key 0) too, so only self-attestation stands in its way
        anvil.client.grant_role(Role.EVALUATOR, anvil.address(index))
    evidence = ("--accuracy-bps", "9400", "--test-set-digest", str(OWN_TEST_SET))
    assert run("attest", str(model), *evidence, key=1)[0] == EXIT_OK
    block = anvil.client.head()

    cases = [
        (1, model, "already_attested", "already attested checkpoint"),
        (0, model, "self_attestation", "cannot attest it"),
        (1, digest("never registered"), "unknown_model", "is registered"),
        (1, revoked, "revoked_model", "cannot be attested"),
    ]
    for key, target, code_name, words in cases:
        code, out, err = run("--json", "attest", str(target), *evidence, key=key)
        assert code == EXIT_FAILED, (code_name, out, err)
        assert json.loads(out)["error"]["code"] == code_name
        assert err.startswith("error: ") and words in err

    assert anvil.client.head() == block  # refused before any transaction: nothing changed
    assert [a["accuracy_bps"] for a in show_json(run, model)["attestations"]] == [9_400]
    assert show_json(run, revoked)["attestations"] == []


@pytest.mark.anvil
def test_cli_refuses_bad_attest_input_as_usage(registry_cli: Any, anvil: Any) -> None:
    run = registry_cli
    model = str(registered(anvil, "bad input"))
    for argv, words in [
        (("attest", model, "--accuracy-bps", "10001", "--test-set-digest", str(TEST_SET)), "10001"),
        (("attest", model, "--accuracy-bps", "9000"), "--test-set-digest"),
        (("attest", model, "--accuracy-bps", "9000", "--test-set-digest", "sha256:12"), "12"),
        (("attest", "revoke", model, "extra"), "attest revoke DIGEST"),
        (("attest", model, model), "one digest"),
    ]:
        code, _, err = run(*argv, key=1)
        assert code == EXIT_USAGE, (argv, err)
        assert words in err


@pytest.mark.anvil
def test_cli_verify_is_refused_until_a_trusted_evaluator_attests(
    registry_cli: Any, anvil: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apikit import make_checkpoint

    run = registry_cli
    path = tmp_path / "model.safetensors"
    path.write_bytes(make_checkpoint(seed=43))
    model = digest_file(path)
    anvil.client.register(RegisterRequest(model, 9_500, TEST_SET, CARD))
    evaluator = anvil.address(1)
    anvil.client.grant_role(Role.EVALUATOR, evaluator)
    monkeypatch.setenv("REGISTRY_MIN_ATTESTATIONS", "1")
    monkeypatch.setenv("REGISTRY_TRUSTED_EVALUATORS", evaluator)

    code, out, _ = run("verify", str(path))
    assert code == EXIT_FAILED
    assert "[policy]: too few trusted attestations: 1 needed, 0 found" in out
    assert f"{evaluator}: no attestation" in out

    evidence = ("--accuracy-bps", "9480", "--test-set-digest", str(TEST_SET))
    assert run("attest", str(model), *evidence, key=1)[0] == EXIT_OK
    code, out, _ = run("verify", str(path))
    assert code == EXIT_OK and out.startswith(f"VERIFIED {path}")


def write_npz(path: Path, test_seed: int = 2, classes: int = 3) -> Path:
    """A tiny MedMNIST-style archive whose class c brightens band c (``test_seed`` draws the test
    split alone, so another seed is another test set of the same task)."""
    import numpy as np

    arrays: dict[str, Any] = {}
    for split, seed, n in (("train", 0, 90), ("val", 1, 15), ("test", test_seed, 60)):
        rng = np.random.default_rng(seed)
        labels = np.arange(n, dtype=np.int64) % classes
        images = rng.integers(0, 140, size=(n, 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, c * 2 : (c + 1) * 2, 6:22] += 50
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels[:, None]
    np.savez(path, **arrays)
    return path


@pytest.mark.anvil
def test_evaluate_attest_measures_and_attests_on_the_anchored_or_the_evaluators_own_test_set(
    registry_cli: Any, anvil: Any, tmp_path: Path
) -> None:
    run = registry_cli
    data, out_dir = write_npz(tmp_path / "scans.npz"), tmp_path / "model"
    train = ("train", "--data", str(data), "--out", str(out_dir), "--epochs", "2")
    assert main([*train, "--max-shift", "0", "--device", "cpu", "--quiet"]) == EXIT_OK
    checkpoint = out_dir / "model.safetensors"
    assert run("register", str(checkpoint), "--card", str(out_dir / "model_card.json"))[0] == 0
    claim = json.loads((out_dir / "model_card.json").read_text())["evaluation"]
    model = digest_file(checkpoint)
    for index in (1, 2):
        anvil.client.grant_role(Role.EVALUATOR, anvil.address(index))
    report = tmp_path / "evaluation.json"

    code, out, err = run(
        "--json", "evaluate", str(checkpoint), "--data", str(data), "--attest", "--report-out",
        str(report), key=1,
    )  # fmt: skip

    assert code == EXIT_OK, err
    answer = json.loads(out)
    assert answer["outcome"] == "reproduced" and answer["report"] == str(report)
    made = answer["attestation"]
    assert (made["accuracy_bps"], made["test_set"]) == (claim["accuracy_bps"], "anchored")
    assert made["report_digest"] == str(digest_file(report))
    reported = json.loads(report.read_bytes())
    assert reported == {k: v for k, v in answer.items() if k not in ("attestation", "report")}

    own = write_npz(tmp_path / "own.npz", test_seed=7)
    code, out, err = run(
        "--json", "evaluate", str(checkpoint), "--data", str(own), "--attest", key=2
    )
    assert code == EXIT_FAILED, err  # evaluate's answer: the claim was not made on this data
    answer = json.loads(out)
    assert answer["outcome"] == "different_test_set"
    made = answer["attestation"]
    assert (made["test_set"], made["report_digest"]) == ("own", None)
    assert made["test_set_digest"] == answer["measured"]["test_set_digest"]
    assert made["accuracy_bps"] == answer["measured"]["accuracy_bps"]
    listed = show_json(run, model)["attestations"]
    assert [(a["evaluator"], a["test_set"]) for a in listed] == [
        (anvil.address(1), "anchored"),
        (anvil.address(2), "own"),
    ]


@pytest.mark.anvil
def test_evaluate_attest_by_the_registrant_is_refused_before_measuring(
    registry_cli: Any, anvil: Any, tmp_path: Path
) -> None:
    from apikit import CLASS_NAMES, make_checkpoint

    run = registry_cli
    path = tmp_path / "model.safetensors"
    path.write_bytes(make_checkpoint(seed=44))
    model = digest_file(path)
    anvil.client.register(RegisterRequest(model, 9_500, TEST_SET, CARD))
    anvil.client.grant_role(Role.EVALUATOR, anvil.address(0))
    report = tmp_path / "evaluation.json"
    data = write_npz(tmp_path / "scans.npz", classes=len(CLASS_NAMES))

    code, _, err = run(
        "evaluate", str(path), "--data", str(data), "--attest", "--report-out", str(report)
    )

    assert code == EXIT_FAILED and "cannot attest it" in err
    assert not report.exists()
    assert show_json(run, model)["attestations"] == []


def test_settings_that_need_more_trusted_evaluators_than_they_list_are_refused_at_start() -> None:
    from registry.config import get_settings
    from registry.errors import ConfigurationError

    one = EVALUATORS[0]
    with pytest.raises(ConfigurationError) as raised:
        get_settings(min_attestations=2, trusted_evaluators=one)
    message = raised.value.message
    assert "REGISTRY_MIN_ATTESTATIONS=2" in message
    assert "REGISTRY_TRUSTED_EVALUATORS (it has 1)" in message
    assert "Value error" not in message
    assert get_settings(min_attestations=1, trusted_evaluators=one).min_attestations == 1
    assert get_settings(min_attestations=0).trusted_evaluators == []
