"""GET /models/{digest}/proof: the bundle a clinic verifies with no node, served by the service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apikit import settings_for
from chainkit import digest, request
from fastapi.testclient import TestClient

from registry.api import create_app
from registry.core.bundles import ProofBundle
from registry.offline import Trust, verify_bundle


@pytest.fixture
def anvil_http(anvil: Any, tmp_path: Path) -> Iterator[TestClient]:
    settings = settings_for(tmp_path / "data", rpc_url=anvil.endpoint)
    with TestClient(create_app(settings, client=anvil.client)) as http:
        yield http


@pytest.mark.anvil
def test_proof_route_serves_a_bundle_that_verifies_offline(
    anvil: Any, anvil_http: TestClient
) -> None:
    anvil.client.register(request("served"))
    response = anvil_http.get(f"/models/{digest('served')}/proof")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    bundle = ProofBundle.parse(response.content)
    assert int(response.headers["x-proof-block"]) == bundle.block_number
    block = anvil.node.rpc("eth_getBlockByNumber", [hex(bundle.block_number), False])
    trust = Trust(bytes.fromhex(block["hash"][2:]), anvil.client.address, anvil.client.chain_id)
    offline = verify_bundle(
        bundle, digest("served"), trust, anvil.client.artifact.deployed_bytecode
    )
    assert offline.verdict.verified
    assert offline.verdict.record == offline.checked.record


@pytest.mark.anvil
def test_proof_route_takes_a_block_and_refuses_one_past_the_head(
    anvil: Any, anvil_http: TestClient
) -> None:
    anvil.client.register(request("served"))
    head = anvil.client.head()
    earlier = anvil_http.get(f"/models/{digest('served')}/proof", params={"block": head - 1})
    assert earlier.status_code == 200
    assert ProofBundle.parse(earlier.content).block_number == head - 1
    past = anvil_http.get(f"/models/{digest('served')}/proof", params={"block": head + 5})
    assert past.status_code == 400
    assert past.json()["error"]["details"]["block"] == head + 5


def test_proof_route_on_a_chain_without_proofs_names_it(make_api: Any) -> None:
    api = make_api()
    response = api.http.get(f"/models/{digest('x')}/proof")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "proofs_unsupported"


def test_proof_route_refuses_a_bad_digest(make_api: Any) -> None:
    response = make_api().http.get("/models/not-a-digest/proof")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_digest"


@pytest.mark.anvil
def test_predict_runs_from_a_stored_bundle_while_the_node_is_down_only_when_allowed(
    make_anvil_node: Any, tmp_path: Path
) -> None:
    from apikit import REGISTRAR, deploy, make_card, make_checkpoint, png

    from registry.core.bundles import TrustedBlocks

    node = make_anvil_node()
    address, key = deploy(node.url)
    pins = tmp_path / "pins.json"
    settings = settings_for(
        tmp_path / "data",
        rpc_url=node.url,
        contract_address=address,
        private_key=key,
        validity_ttl_s=0,
        identity_ttl_s=0.5,
        request_timeout_s=2.0,
        offline_bundles=True,
        trusted_checkpoint_file=pins,
    )
    with TestClient(create_app(settings)) as http:
        checkpoint = make_checkpoint(seed=41)
        files = {"checkpoint": ("m", checkpoint), "card": ("c", make_card(checkpoint))}
        registered = http.post("/models", files=files, headers=REGISTRAR)
        assert registered.status_code == 201, registered.text
        digest = registered.json()["record"]["digest"]
        other = make_checkpoint(seed=42)
        files = {"checkpoint": ("m", other), "card": ("c", make_card(other))}
        second = http.post("/models", files=files, headers=REGISTRAR)
        assert second.status_code == 201, second.text
        head = node.rpc("eth_getBlockByNumber", ["latest", False])
        pinned = int(head["number"], 16)
        pins.write_bytes(
            TrustedBlocks(31337, address, {pinned: bytes.fromhex(head["hash"][2:])}).to_json()
        )
        image = [("images", ("x.png", png()))]
        online = http.post(f"/models/{digest}/predict", files=image)
        assert online.status_code == 200, online.text
        assert (settings.data_dir / "bundles" / f"{digest.split(':')[1]}.json").is_file()

        node.stop()

        offline = http.post(f"/models/{digest}/predict", files=image)
        assert offline.status_code == 200, offline.text
        provenance = offline.json()["provenance"]
        assert provenance["validity_confirmed_at_block"] == pinned
        # The second model was never verified here while the node answered: no bundle, refused.
        never = http.post(f"/models/{second.json()['record']['digest']}/predict", files=image)
        assert never.status_code == 503
        assert never.json()["error"]["code"] == "chain_unavailable"
