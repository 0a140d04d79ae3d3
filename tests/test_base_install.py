"""The base install (``pip install medical-model-registry``, no extras) is a working verifier.

A clinic that only checks files must not need torch or a web framework. These tests build that
install for real: a fresh virtual environment, the hash-checked base lock
(``requirements/base.txt``), then the project itself as a wheel, built from a copy of the
checkout, so that nothing resolves through the source tree. Then they show what it lacks (the
deep-learning, web and in-process-chain stacks), that it carries the contract build inside the
wheel, and that its ``registry`` hashes, verifies and registers against a real anvil node on which
the main environment deployed the registry.

Packages come from the package indexes through pip's cache, so the first run on a machine downloads
the base set (a minute or so) and later runs take about half that to build the environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apikit import TEST_SET_DIGEST, make_card, make_checkpoint

from registry.chain.artifacts import DEFAULT_ARTIFACT
from registry.core.digest import digest_bytes
from registry.core.records import RegisterRequest, Role

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BASE_LOCK = ROOT / "requirements" / "base.txt"
# What pip reads from a checkout to build the wheel.
BUILD_INPUTS = (
    "pyproject.toml",
    "README.md",
    "MANIFEST.in",
    "contracts",
    "modelformat",
    "registry",
    "training",
)
# Import names of what only the extras bring: [serve], [train], [memory], [dev].
EXTRA_ONLY = (
    "torch",
    "torchvision",
    "fastapi",
    "starlette",
    "uvicorn",
    "multipart",
    "python_multipart",
    "PIL",
    "numpy",
    "safetensors",
    "sklearn",
    "tqdm",
    "eth_tester",
    "solcx",
    "pytest",
)


def _clean_env(**registry: str) -> dict[str, str]:
    """This process's environment without anything that would point Python or the registry
    elsewhere (the main venv, the checkout, the test session's settings), plus ``registry``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("REGISTRY_")
        and key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    }
    env.update(registry)
    return env


def _run(*argv: str | Path, cwd: Path, timeout: float = 120, **registry: str) -> Any:
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=_clean_env(**registry),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the base lock and the project's wheel, nothing else; its bin/ folder."""
    home = tmp_path_factory.mktemp("base-install")
    source = home / "checkout"
    source.mkdir()
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            # symlinks=True: registry/chain/ModelRegistry.json stays the link into contracts/build
            # that the checkout has; the wheel build must turn it into the file's bytes.
            shutil.copytree(
                path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(path, source / name)

    env_dir = home / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / "bin"
    pip = (bin_dir / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check")
    done = _run(*pip, "--require-hashes", "-r", BASE_LOCK, cwd=home, timeout=900)
    assert done.returncode == 0, f"installing {BASE_LOCK} failed:\n{done.stderr[-4000:]}"
    # --no-deps: every dependency came from the lock; --no-build-isolation: with its setuptools.
    done = _run(*pip, "--no-deps", "--no-build-isolation", source, cwd=home, timeout=300)
    assert done.returncode == 0, f"installing the project failed:\n{done.stderr[-4000:]}"
    yield bin_dir


def _python(bin_dir: Path, code: str, cwd: Path) -> Any:
    done = _run(bin_dir / "python", "-c", code, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_base_install_has_none_of_the_extras_packages(base_venv: Path, tmp_path: Path) -> None:
    code = (
        "import importlib.util, json\n"
        f"print(json.dumps([m for m in {EXTRA_ONLY!r} if importlib.util.find_spec(m)]))\n"
    )
    assert _python(base_venv, code, tmp_path) == []
    # The check above means something only if the environment does import installed packages.
    assert _python(base_venv, "import web3, json; print(json.dumps(web3.__name__))", tmp_path)


def test_base_install_runs_the_wheel_with_the_contract_build_inside(
    base_venv: Path, tmp_path: Path
) -> None:
    code = (
        "import json, registry\n"
        "from registry.chain.artifacts import DEFAULT_ARTIFACT, load_artifact\n"
        "print(json.dumps([registry.__file__, str(DEFAULT_ARTIFACT), load_artifact().digest]))\n"
    )
    package, artifact, digest = _python(base_venv, code, tmp_path)
    site = base_venv.parent / "lib"
    assert Path(package).is_relative_to(site), f"registry imported from {package}, not the wheel"
    assert Path(artifact).is_relative_to(site)
    assert not Path(artifact).is_symlink()
    # The very bytes of the one committed build, so deployments record the same artifact digest.
    assert Path(artifact).read_bytes() == DEFAULT_ARTIFACT.read_bytes()
    assert digest == digest_bytes(DEFAULT_ARTIFACT.read_bytes()).hex


@pytest.mark.anvil
def test_base_install_hashes_verifies_and_registers_against_anvil(
    base_venv: Path, anvil: Any, tmp_path: Path
) -> None:
    registry = base_venv / "registry"
    chain = {
        "REGISTRY_RPC_URL": anvil.endpoint,
        "REGISTRY_CONTRACT_ADDRESS": anvil.client.address,
        "REGISTRY_CHAIN_ID": str(anvil.deployment.chain_id),
        "REGISTRY_DATA_DIR": str(tmp_path / "data"),
    }
    checkpoint = make_checkpoint(seed=41)
    path = tmp_path / "model.safetensors"
    path.write_bytes(checkpoint)
    # Registered from the main environment with the project's own client.
    anvil.client.register(
        RegisterRequest(
            digest=digest_bytes(checkpoint),
            accuracy_bps=9_250,
            test_set_digest=digest_bytes(b"the held-out test split"),
            card_digest=digest_bytes(make_card(checkpoint)),
        )
    )

    done = _run(registry, "hash", path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == str(digest_bytes(checkpoint))

    done = _run(registry, "verify", path, cwd=tmp_path, **chain)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("VERIFIED")

    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(checkpoint[:-1] + bytes([checkpoint[-1] ^ 1]))
    done = _run(registry, "verify", tampered, cwd=tmp_path, **chain)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("NOT VERIFIED") and "[unknown]" in done.stdout

    # `register` runs the checkpoint header check and reads the card: both without numpy/torch.
    registrar = anvil.other(1, Role.REGISTRAR)
    second = make_checkpoint(seed=42)
    (tmp_path / "second").mkdir()
    second_path = tmp_path / "second" / "model.safetensors"
    second_path.write_bytes(second)
    (tmp_path / "second" / "model_card.json").write_bytes(make_card(second))
    key = {"REGISTRY_PRIVATE_KEY": anvil.keys[1]}
    done = _run(
        registry,
        "register",
        second_path,
        "--accuracy-bps",
        "9250",
        "--test-set-digest",
        TEST_SET_DIGEST,
        cwd=tmp_path,
        **chain,
        **key,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    record = registrar.get(digest_bytes(second))
    assert record is not None and record.registrant == registrar.account.address  # type: ignore[union-attr]
    done = _run(registry, "verify", second_path, cwd=tmp_path, **chain)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (("verify", "{file}", "--rpc-url", "memory"), "memory"),
        (("train", "--out", "{tmp}/out", "--quiet"), "train"),
        (("serve",), "serve"),
    ],
    ids=["memory-chain", "train", "serve"],
)
def test_base_install_names_the_extra_a_command_needs(
    base_venv: Path, tmp_path: Path, argv: tuple[str, ...], extra: str
) -> None:
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"weights")
    args = [a.format(file=file, tmp=tmp_path) for a in argv]
    done = _run(base_venv / "registry", *args, cwd=tmp_path, REGISTRY_DATA_DIR=str(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"medical-model-registry[{extra}]" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
