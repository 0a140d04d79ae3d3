"""GET /models on a real anvil node: pages from the event index, filters, refusals, freshness.

Verdicts never come from the index: with the index file tampered with, the list shows the
tampering while /verify and predict still answer from the chain.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apikit import Api, assert_error, card_dict, digest_of, make_checkpoint, png, settings_for
from chainkit import request
from conftest import Backend, anvil_backend
from fastapi.testclient import TestClient

from registry.api import create_app
from training.card import canonical_json

pytestmark = pytest.mark.anvil


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[[Backend], Api]]:
    opened: list[TestClient] = []

    def build(backend: Backend) -> Api:
        settings = settings_for(tmp_path / f"data{len(opened)}", rpc_url=backend.endpoint)
        http = TestClient(create_app(settings, client=backend.client))
        http.__enter__()
        opened.append(http)
        return Api(http, backend, settings)

    yield build
    for http in opened:
        http.__exit__(None, None, None)


def all_pages(api: Api, url: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of ``url``, following ``next`` links; the bodies."""
    pages = []
    response = api.http.get(url, params=params)
    while True:
        assert response.status_code == 200, response.text
        pages.append(response.json())
        if "next" not in pages[-1]:
            return pages
        response = api.http.get(pages[-1]["next"])


def listed(api: Api, **params: Any) -> list[str]:
    return [m["digest"] for page in all_pages(api, "/models", **params) for m in page["models"]]


def test_pages_cover_every_record_once_in_chain_order_while_registrations_arrive(
    anvil: Backend, make_app: Callable[[Backend], Api]
) -> None:
    api = make_app(anvil)
    for n in range(7):
        anvil.client.register(request(f"catalogue {n}"))
    seen: list[str] = []
    response = api.http.get("/models", params={"limit": 3})
    late = 0
    while True:
        body = response.json()
        assert body["count"] == len(body["models"]) <= 3
        assert body["indexed_to_block"] == anvil.client.head()
        seen.extend(m["digest"] for m in body["models"])
        anvil.client.register(request(f"late {late}"))  # lands after every page read
        late += 1
        if "next" not in body:
            break
        assert "limit=3" in body["next"]
        response = api.http.get(body["next"])
    truth = [str(r.digest) for r in anvil.reader().list_models()]
    assert len(seen) == len(set(seen))
    assert seen == truth[: len(seen)]
    assert set(truth[:7]) <= set(seen)


def test_each_record_keeps_the_fields_the_list_always_had(
    anvil: Backend, make_app: Callable[[Backend], Api]
) -> None:
    api = make_app(anvil)
    _, stored = api.registered_model(seed=3)
    anvil.client.register(request("not stored here"))
    body = api.http.get("/models").json()
    truth = {str(r.digest): r.to_dict() for r in anvil.reader().list_models()}
    assert "next" not in body and body["count"] == 2
    for model in body["models"]:
        assert {k: v for k, v in model.items() if k != "stored"} == truth[model["digest"]]
        assert model["stored"] is (model["digest"] == stored)


def test_filters_select_by_registrant_validity_parent_accuracy_and_card_name(
    anvil: Backend, make_app: Callable[[Backend], Api]
) -> None:
    api = make_app(anvil)
    root_ckpt = make_checkpoint(11)
    root_card = card_dict(root_ckpt, accuracy_bps=9_000)
    root_card["model_name"] = "LeNet Pneumonia"
    assert api.register(root_ckpt, canonical_json(root_card)).status_code == 201
    root = digest_of(root_ckpt)
    _, child = api.registered_model(seed=12, accuracy_bps=9_500, parent=root)
    _, revoked = api.registered_model(seed=13, accuracy_bps=8_000)
    assert api.revoke(revoked).status_code == 200

    assert listed(api, registrant=anvil.admin) == [root, child, revoked]
    assert listed(api, registrant=anvil.admin.lower()) == [root, child, revoked]
    assert listed(api, registrant="0x" + "12" * 20) == []
    assert listed(api, valid="false") == [revoked]
    assert listed(api, valid="true") == [root, child]
    assert listed(api, parent=root) == [child]
    assert listed(api, min_accuracy_bps=9_000) == [root, child]
    assert listed(api, name="pneumonia") == [root]
    assert listed(api, name="LENET") == [root, child, revoked]  # the others: lenet5-synthetic-test
    assert listed(api, name="lenet p", valid="true", limit=1) == [root]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": -3}, "limit"),
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b"12;4").decode()}, "cursor"),
        ({"min_accuracy_bps": 10_001}, "min_accuracy_bps"),
        ({"parent": "sha256:abc"}, None),
        ({"registrant": "0xAbC"}, None),
        ({"name": "x" * 201}, "name"),
    ],
)
def test_bad_paging_and_filter_values_are_400_naming_the_value(
    anvil: Backend, make_app: Callable[[Backend], Api], params: dict[str, Any], field: str | None
) -> None:
    error = assert_error(make_app(anvil).http.get("/models", params=params), 400)
    assert error["code"] in {"invalid_input", "invalid_digest"}
    if field is not None:
        assert field in error["details"]
    if field == "limit":
        assert error["details"]["max_limit"] == 500 and "500" in error["message"]


def test_a_chain_that_is_down_is_a_503_for_the_catalogue_too(
    make_anvil_node: Callable[..., Any], make_app: Callable[[Backend], Api]
) -> None:
    # Fail closed: the index could show a model revoked during the outage as valid.
    backend = anvil_backend(make_anvil_node())
    api = make_app(backend)
    checkpoint, registered = api.registered_model(seed=31)
    before = api.http.get("/models").json()
    assert [m["digest"] for m in before["models"]] == [registered]
    backend.node.stop()
    assert_error(api.http.get("/models"), 503, "chain_unavailable")
    assert_error(api.verify(checkpoint), 503, "chain_unavailable")


def test_verify_and_predict_ignore_a_tampered_index(
    anvil: Backend, make_app: Callable[[Backend], Api]
) -> None:
    api = make_app(anvil)
    checkpoint, good = api.registered_model(seed=21)
    _, revoked = api.registered_model(seed=22)
    assert api.revoke(revoked).status_code == 200
    assert len(listed(api)) == 2
    # The index says the good model is revoked and the revoked one is fine, at 100 %.
    with sqlite3.connect(api.settings.data_dir / "index.sqlite3") as conn:
        conn.execute("UPDATE models SET reason = 2, revoked_at = 1, revoked_block = 1")
        conn.execute(
            "UPDATE models SET reason = NULL, accuracy_bps = 10000 WHERE digest = ?",
            (revoked.removeprefix("sha256:"),),
        )
    assert listed(api, valid="true") == [revoked]  # the list reads the tampered index...

    verdict = api.verify(checkpoint).json()  # ...the verdicts read the chain
    assert (verdict["verified"], verdict["reason"]) == (True, "verified")
    assert verdict["record"]["accuracy_bps"] == 9_250
    predicted = api.predict_png(good, png())
    assert predicted.status_code == 200, predicted.text
    refused = api.predict_png(revoked, png())
    assert refused.status_code == 403
