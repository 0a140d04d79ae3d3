"""The clinic web page in a real browser (headless Chromium) against a live server."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from apikit import (
    REGISTRAR,
    REVOKER,
    card_dict,
    digest_of,
    make_card,
    make_checkpoint,
    png,
    settings_for,
)

from registry.api import create_app
from registry.devnet import free_port
from training.card import canonical_json

pytestmark = pytest.mark.browser
SCREENSHOTS = Path(os.environ["API_SCREENSHOTS"]) if os.environ.get("API_SCREENSHOTS") else None


@contextlib.contextmanager
def serving(client: Any, data_dir: Path, **overrides: Any) -> Iterator[str]:
    """The app served by uvicorn in a thread, on ``client``'s chain; its base URL."""
    settings = settings_for(data_dir, validity_ttl_s=0.2, **overrides)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, client=client),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live(memory: Any, tmp_path: Path) -> Iterator[str]:
    """The service on the session's eth-tester chain, with the default (empty) policy."""
    with serving(memory.client, tmp_path / "data") as base:
        yield base


@pytest.fixture
def strict_live(memory: Any, tmp_path: Path) -> Iterator[str]:
    """A clinic that wants 95 % and trusts only the chain's admin (who registers here)."""
    with serving(
        memory.client, tmp_path / "strict", min_accuracy_bps=9500, trusted_registrants=memory.admin
    ) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any, timeout: float = 10) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _verdict(driver: Any) -> str:
    def settled(d: Any) -> str | None:
        state = d.find_element("id", "verify-result").get_attribute("data-verified")
        return state or None

    return str(_wait(driver, settled))


def _register(base: str, checkpoint: bytes, card: bytes | None = None) -> str:
    files = {
        "checkpoint": ("m", checkpoint),
        "card": ("c", card or make_card(checkpoint, accuracy_bps=9731)),
    }
    response = httpx.post(f"{base}/models", files=files, headers=REGISTRAR, timeout=30)
    assert response.status_code == 201, response.text
    return digest_of(checkpoint)


def test_page_verifies_a_checkpoint_then_predicts_with_provenance(
    live: str, browser: Any, tmp_path: Path
) -> None:
    checkpoint = make_checkpoint(seed=11)
    digest = _register(live, checkpoint)
    model_file = tmp_path / "model.safetensors"
    model_file.write_bytes(checkpoint)
    image_file = tmp_path / "scan.png"
    image_file.write_bytes(png())

    browser.get(live + "/")
    assert not browser.find_element("id", "image-input").is_enabled()  # nothing verified yet
    browser.find_element("id", "checkpoint-input").send_keys(str(model_file))

    assert _verdict(browser) == "true"
    result = browser.find_element("id", "verify-result").text
    assert "VERIFIED" in result and "NOT VERIFIED" not in result
    assert "97.31 % on the held-out test split of synthetic-test (100 images)" in result
    assert digest in result
    # apikit's card names the model but not whether its data are medical: never shown as such.
    assert "lenet5-synthetic-test" in result and "tests only" in result
    assert "cannot be confirmed here: its model card does not say" in result

    browser.find_element("id", "image-input").send_keys(str(image_file))
    browser.find_element("id", "predict-button").click()
    _wait(browser, lambda d: "Result:" in d.find_element("id", "predict-result").text)
    prediction = browser.find_element("id", "predict-result").text
    assert "benign" in prediction and "malignant" in prediction and "%" in prediction
    if SCREENSHOTS:
        browser.set_window_size(1100, 1700)
        browser.save_screenshot(str(SCREENSHOTS / "verified.png"))
    provenance = browser.find_element("id", "provenance").text
    assert digest in provenance
    assert "97.31 %" in provenance
    assert "Still valid at block" in provenance


def test_page_says_not_verified_for_a_tampered_file_and_keeps_prediction_closed(
    live: str, browser: Any, tmp_path: Path
) -> None:
    checkpoint = bytearray(make_checkpoint(seed=12))
    _register(live, bytes(checkpoint))
    checkpoint[-1] ^= 1
    model_file = tmp_path / "tampered.safetensors"
    model_file.write_bytes(bytes(checkpoint))

    browser.get(live + "/")
    browser.find_element("id", "checkpoint-input").send_keys(str(model_file))

    assert _verdict(browser) == "false"
    assert "NOT VERIFIED" in browser.find_element("id", "verify-result").text
    assert "does not match any registered model" in browser.find_element("id", "verify-result").text
    assert not browser.find_element("id", "image-input").is_enabled()
    assert not browser.find_element("id", "predict-button").is_enabled()


def test_page_shows_a_revocation_with_its_reason(live: str, browser: Any, tmp_path: Path) -> None:
    checkpoint = make_checkpoint(seed=13)
    digest = _register(live, checkpoint)
    revoked = httpx.post(
        f"{live}/models/{digest}/revoke", json={"reason": "safety-issue"}, headers=REVOKER
    )
    assert revoked.status_code == 200, revoked.text
    model_file = tmp_path / "model.safetensors"
    model_file.write_bytes(checkpoint)

    browser.get(live + "/")
    browser.find_element("id", "checkpoint-input").send_keys(str(model_file))

    assert _verdict(browser) == "false"
    text = browser.find_element("id", "verify-result").text
    assert "withdrawn" in text and "a safety issue" in text


def test_page_refuses_a_pickle_without_opening_it(live: str, browser: Any, tmp_path: Path) -> None:
    import pickle

    model_file = tmp_path / "model.pt"
    model_file.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))

    browser.get(live + "/")
    browser.find_element("id", "checkpoint-input").send_keys(str(model_file))

    assert _verdict(browser) == "false"
    assert "pickle" in browser.find_element("id", "verify-result").text


# --- what a clinician needs to judge the model -----------------------------------------------

DEMO_NAME = "sklearn-digits-28 (stand-in, not medical data)"


def _card(checkpoint: bytes, accuracy_bps: int, **changes: Any) -> bytes:
    card = card_dict(checkpoint, accuracy_bps)
    card["dataset"] = {**card["dataset"], **changes.pop("dataset", {})}
    card.update(changes)
    return canonical_json(card)


def _displayed(driver: Any, css: str) -> list[Any]:
    return [e for e in driver.find_elements("css selector", css) if e.is_displayed()]


def test_page_shows_name_use_stand_in_data_accuracy_basis_and_the_empty_policy(
    live: str, browser: Any, tmp_path: Path
) -> None:
    checkpoint = make_checkpoint(seed=14)
    card = _card(
        checkpoint,
        9731,
        model_name="digits demo net",
        intended_use="Demonstration only: must never be used on patient images.",
        dataset={"name": DEMO_NAME, "is_stand_in": True},
    )
    _register(live, checkpoint, card)
    model_file = tmp_path / "model.safetensors"
    model_file.write_bytes(checkpoint)

    browser.get(live + "/")
    masthead = _wait(browser, lambda d: d.find_element("id", "clinic-policy").text or None)
    browser.find_element("id", "checkpoint-input").send_keys(str(model_file))

    assert _verdict(browser) == "true"
    box = browser.find_element("id", "verify-result")
    result = box.text
    assert "digits demo net" in result
    assert "Demonstration only: must never be used on patient images." in result
    assert f"97.31 % on the held-out test split of {DEMO_NAME} (100 images)" in result
    # The stand-in flag: a banner that is seen, and the box does not wear a clinical green.
    assert box.get_attribute("data-stand-in") == "true"
    [banner] = _displayed(browser, "#verify-result .stand-in")
    assert banner.text.startswith("Demonstration model, not for patients.")
    assert "not medical data" in banner.text
    # The policy: no minimum, any registrar, and a warning that no floor is enforced.
    assert "Minimum accuracy\nnone" in result and "Accepted registrants\nany registrar" in result
    [warning] = _displayed(browser, "#verify-result .no-minimum")
    assert warning.text == "This clinic enforces no minimum accuracy: a registered model is " + (
        "accepted however low its accuracy. Check the accuracy yourself before relying on the model."
    )
    assert "no minimum accuracy; models from any registrar" in masthead
    assert _displayed(browser, "#clinic-policy .no-minimum")
    if SCREENSHOTS:
        browser.set_window_size(1100, 1900)
        browser.save_screenshot(str(SCREENSHOTS / "stand-in.png"))


def test_page_shows_the_model_and_the_policy_that_refused_it(
    strict_live: str, memory: Any, browser: Any, tmp_path: Path
) -> None:
    checkpoint = make_checkpoint(seed=15)
    card = _card(
        checkpoint,
        9000,
        model_name="chest triage v2",
        intended_use="Research use: sorts chest images into two classes.",
        dataset={"is_stand_in": False},
    )
    _register(strict_live, checkpoint, card)
    model_file = tmp_path / "model.safetensors"
    model_file.write_bytes(checkpoint)

    browser.get(strict_live + "/")
    browser.find_element("id", "checkpoint-input").send_keys(str(model_file))

    assert _verdict(browser) == "false"
    result = browser.find_element("id", "verify-result").text
    assert "chest triage v2" in result
    assert "Research use: sorts chest images into two classes." in result
    assert "synthetic-test (not a stand-in, says its model card)" in result
    assert "90.00 % is below the clinic's minimum of 95.00 %" in result
    assert "Minimum accuracy\n95.00 %" in result
    assert f"Accepted registrants\n{memory.admin.lower()}" in result
    assert not browser.find_elements("css selector", "#verify-result .stand-in")
    assert not browser.find_elements("css selector", ".no-minimum")  # a floor is enforced
    masthead = browser.find_element("id", "clinic-policy").text
    assert masthead == (
        "This clinic's policy: minimum accuracy 95.00 %; models from 1 trusted registrant(s) only."
    )


def test_a_model_name_with_markup_is_shown_as_text_and_never_runs(
    live: str, browser: Any, tmp_path: Path
) -> None:
    name = "<img src=x onerror=\"document.title='pwned'\">"
    use = "<script>document.title='pwned'</script> <b>bold</b>"
    checkpoint = make_checkpoint(seed=16)
    _register(live, checkpoint, _card(checkpoint, 9731, model_name=name, intended_use=use))
    model_file = tmp_path / "model.safetensors"
    model_file.write_bytes(checkpoint)
    image_file = tmp_path / "scan.png"
    image_file.write_bytes(png())

    browser.get(live + "/")
    title = browser.title
    browser.find_element("id", "checkpoint-input").send_keys(str(model_file))
    assert _verdict(browser) == "true"
    browser.find_element("id", "image-input").send_keys(str(image_file))
    browser.find_element("id", "predict-button").click()
    _wait(browser, lambda d: "Result:" in d.find_element("id", "predict-result").text)

    assert name in browser.find_element("id", "verify-result").text
    assert use in browser.find_element("id", "verify-result").text
    assert name in browser.find_element("id", "provenance").text
    for markup in ("img", "script", "b"):
        assert not browser.find_elements("css selector", f"main {markup}")
    assert browser.title == title


def test_a_model_registered_elsewhere_is_kept_when_verified_and_then_analyses_an_image(
    live: str, memory: Any, browser: Any, tmp_path: Path
) -> None:
    # Registered on the chain directly, never uploaded to this service: the page's check keeps
    # the verified file (an import), so step 2 works at once.
    from registry.core.digest import Digest, digest_bytes
    from registry.core.records import RegisterRequest

    checkpoint = make_checkpoint(seed=17)
    card = make_card(checkpoint, accuracy_bps=9731)
    memory.client.register(
        RegisterRequest(
            digest=digest_bytes(checkpoint),
            accuracy_bps=9731,
            test_set_digest=Digest.parse(card_dict(checkpoint)["evaluation"]["test_set_sha256"]),
            card_digest=digest_bytes(card),
            parent=None,
        )
    )
    digest = digest_of(checkpoint)
    before = httpx.get(f"{live}/models/{digest}", timeout=30).json()
    assert before["stored"] is False
    model_file = tmp_path / "model.safetensors"
    model_file.write_bytes(checkpoint)
    image_file = tmp_path / "scan.png"
    image_file.write_bytes(png())

    browser.get(live + "/")
    browser.find_element("id", "checkpoint-input").send_keys(str(model_file))
    assert _verdict(browser) == "true"
    assert browser.find_element("id", "image-input").is_enabled()
    assert "choose an image to analyse" in browser.find_element("id", "predict-hint").text
    browser.find_element("id", "image-input").send_keys(str(image_file))
    browser.find_element("id", "predict-button").click()
    _wait(browser, lambda d: "Result:" in d.find_element("id", "predict-result").text)
    assert digest in browser.find_element("id", "provenance").text
    assert httpx.get(f"{live}/models/{digest}", timeout=30).json()["stored"] is True


def test_page_names_the_batch_a_checkpoint_was_anchored_in(
    live: str, memory: Any, browser: Any, tmp_path: Path
) -> None:
    from apikit import READER

    from registry.services import check_batch, register_batch

    checkpoints = [make_checkpoint(seed=s) for s in (41, 42)]
    tree, manifest = check_batch([(c, make_card(c, accuracy_bps=9731)) for c in checkpoints])
    register_batch(lambda: memory.client, tree, manifest)
    kept = httpx.post(
        f"{live}/batches",
        content=manifest,
        headers={**READER, "Content-Type": "application/json"},
        timeout=30,
    )
    assert kept.status_code == 201, kept.text
    model_file = tmp_path / "model.safetensors"
    model_file.write_bytes(checkpoints[1])

    browser.get(live + "/")
    browser.find_element("id", "checkpoint-input").send_keys(str(model_file))

    assert _verdict(browser) == "true"
    text = browser.find_element("id", "verify-result").text
    position = [leaf[0] for leaf in tree.values].index(bytes.fromhex(digest_of(checkpoints[1])[7:]))
    assert "Anchored in batch" in text and "0x" + tree.root.hex() in text
    assert f"Position in batch\n{position}" in text


def _attestations(driver: Any) -> str:
    """The text of the verdict's "Independent evaluations" section, once it has loaded."""
    return str(_wait(driver, lambda d: d.find_element("css selector", ".attestations").text))


def test_page_lists_attestations_and_admits_once_a_trusted_evaluator_attested(
    memory: Any, browser: Any, tmp_path: Path
) -> None:
    from chainkit import digest as label_digest

    from registry.chain.attestations import Attestations
    from registry.core.digest import Digest
    from registry.core.records import Role

    evaluator = memory.other(1, Role.EVALUATOR)
    address = evaluator.account.address
    with serving(
        memory.client, tmp_path / "evaluated", min_attestations=1, trusted_evaluators=address
    ) as base:
        checkpoint = make_checkpoint(seed=17)
        model = Digest.parse(_register(base, checkpoint))
        model_file = tmp_path / "model.safetensors"
        model_file.write_bytes(checkpoint)

        browser.get(base + "/")
        browser.find_element("id", "checkpoint-input").send_keys(str(model_file))
        assert _verdict(browser) == "false"
        assert "No evaluator has attested this model's accuracy." in _attestations(browser)
        result = browser.find_element("id", "verify-result").text
        assert f"too few trusted attestations: 1 needed, 0 found ({address}" in result
        assert "Independent evaluations needed\n1 from its 1 trusted evaluator(s)" in result

        test_set = memory.client.get(model).test_set_digest
        Attestations(evaluator).attest(model, 9_700, test_set, label_digest("report"))
        browser.get(base + "/")
        browser.find_element("id", "checkpoint-input").send_keys(str(model_file))

        assert _verdict(browser) == "true"
        listed = _attestations(browser)
        assert f"{address} measured 97.00 % on the anchored test set" in listed
        assert f"(report {label_digest('report')})" in listed and "WITHDRAWN" not in listed
