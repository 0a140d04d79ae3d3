"""The `registry` command starts without the deep-learning stack unless it trains or predicts."""

import subprocess
import sys


def test_registry_commands_other_than_train_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from registry.cli import build_parser, main\n"
        "build_parser()\n"
        "main(['hash', 'README.md'])\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"
