"""``python -m training``: train without the registry installed or configured."""

from training.cli import main

raise SystemExit(main())
