"""Finding the anvil executable: the pinned one from ``npm ci`` first, then what the user named.

The npm package ``@foundry-rs/anvil`` ships one binary package per platform
(``@foundry-rs/anvil-<os>-<arch>``) plus a Node launcher in ``node_modules/.bin``. The platform
binary is preferred: signals reach it directly, and no Node process sits between us and the node.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

from registry.errors import ConfigurationError

__all__ = ["ENV_ANVIL_BIN", "find_anvil", "platform_binary"]

ENV_ANVIL_BIN = "REGISTRY_ANVIL_BIN"

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_LAUNCHER = Path("node_modules/.bin/anvil")

# npm's names for the platform (process.platform / process.arch), as the binary packages use them.
_NPM_OS = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}
_NPM_ARCH = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def platform_binary(root: Path) -> Path:
    """Where ``npm ci`` in ``root`` puts the anvil binary for this machine."""
    system = _NPM_OS.get(platform.system(), platform.system().lower())
    arch = _NPM_ARCH.get(platform.machine(), platform.machine().lower())
    name = "anvil.exe" if system == "win32" else "anvil"
    return root / "node_modules" / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / name


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_anvil() -> Path:
    """Return the anvil executable to run.

    Order: ``$REGISTRY_ANVIL_BIN`` (an explicit override: used as given, never second-guessed), the
    platform binary from ``node_modules/@foundry-rs/anvil-<os>-<arch>``, the npm launcher
    ``node_modules/.bin/anvil`` (both under the project root), then ``anvil`` on ``PATH``.
    """
    override = os.environ.get(ENV_ANVIL_BIN)
    if override:
        path = Path(override).expanduser()
        if _is_executable(path):
            return path
        problem = "is not executable" if path.exists() else "does not exist"
        raise ConfigurationError(
            f"{ENV_ANVIL_BIN}={override} {problem}; point it at an anvil executable, "
            f"or unset it to use the one from `npm ci` in {_PROJECT_ROOT}",
            path=str(path),
            searched=[str(path)],
        )
    candidates = [platform_binary(_PROJECT_ROOT), _PROJECT_ROOT / _LAUNCHER]
    for candidate in candidates:
        if _is_executable(candidate):
            return candidate
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    searched = [*map(str, candidates), "anvil on PATH"]
    raise ConfigurationError(
        f"anvil not found (looked at {', '.join(searched)}); run `npm ci` in {_PROJECT_ROOT} "
        f"to install the pinned version, or set {ENV_ANVIL_BIN} to an anvil executable",
        searched=searched,
    )
