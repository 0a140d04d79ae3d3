"""The clinic web page in a real browser (headless Chromium) against a live server."""

from __future__ import annotations

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
from apikit import REGISTRAR, REVOKER, digest_of, make_card, make_checkpoint, png, settings_for

from registry.api import create_app
from registry.devnet import free_port

pytestmark = pytest.mark.browser
SCREENSHOTS = Path(os.environ["API_SCREENSHOTS"]) if os.environ.get("API_SCREENSHOTS") else None


@pytest.fixture
def live(memory: Any, tmp_path: Path) -> Iterator[str]:
    """The app served by uvicorn in a thread, on the session's eth-tester chain."""
    settings = settings_for(tmp_path / "data", validity_ttl_s=0.2)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, client=memory.client),
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


def _register(base: str, checkpoint: bytes) -> str:
    files = {
        "checkpoint": ("m", checkpoint),
        "card": ("c", make_card(checkpoint, accuracy_bps=9731)),
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
    assert "97.31 %" in result
    assert digest in result

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
