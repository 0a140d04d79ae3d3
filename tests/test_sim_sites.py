"""scripts/sim_sites.py in a tiny configuration: two clinic sites, two models, small catalogues.

What is checked is structure, never speed: the table is printed; every site verified, pulled
and served every model; every site refused every model after its revocation, each revocation
timed once per site; every process the script started is gone when it returns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.anvil]

ROOT = Path(__file__).resolve().parents[1]
MODELS = 2
SITES = 2


@pytest.mark.parametrize("mode", ["pull", "s3"])
def test_sim_sites_prints_its_table_and_every_site_refuses_after_the_revocation(
    tmp_path: Path, mode: str
) -> None:
    devnet = pytest.importorskip("registry.devnet")
    try:
        devnet.find_anvil()
    except Exception as exc:  # ConfigurationError: not installed
        pytest.skip(f"anvil is not installed: {exc}")
    if mode == "s3":
        pytest.importorskip("moto.server", reason="s3 mode needs moto[server] ([dev])")
    facts_path = tmp_path / "facts.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "sim_sites.py"),
            *("--mode", mode, "--sites", str(SITES), "--models", str(MODELS)),
            *("--sizes", "5,20", "--requests", "3", "--pulls", "3", "--seconds", "0.5"),
            *("--json", str(facts_path)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for heading in ("refused after revocation", "registry.pull.fetch", "GET /models?limit=100"):
        assert heading in run.stdout
    assert "/verify at site-1" in run.stdout
    for row in ("site-1", "site-2", "      5 models:", "     20 models:"):
        assert row in run.stdout

    facts = json.loads(facts_path.read_text())
    assert facts["mode"] == mode
    assert len(facts["sites"]) == SITES
    for site in facts["sites"]:
        assert len(site["models"]) == MODELS
        for model in site["models"]:
            assert model["verified"] and model["pull_verified"], model
            assert model["predict_status"] == 200, model
            if mode == "pull":  # fetched from the registrar's service, the configured mirror
                assert model["pull_status"] == 201, model
                assert model["pull_source"] == facts["mirror"], model
            else:  # the registrar stored it in the shared bucket: already held, nothing fetched
                assert model["pull_status"] == 200, model
                assert model["pull_source"] is None, model
        assert site["refused_after_revocation"] is True
        assert len(site["revocation_delays_s"]) == MODELS
    assert [row["registered"] for row in facts["catalogue"]] == [5, 20]
    assert all(page == 20 for page in facts["catalogue"][-1]["page"])  # every record listed
    for pid in facts["pids"]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
