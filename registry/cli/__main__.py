"""``python -m registry.cli``: the console script without its installed wrapper, as before the split."""

import sys

from registry.cli.main import main

sys.exit(main())
