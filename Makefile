# The two commands: `make demo` (the whole story on embedded defaults) and `make test`.
# Both set everything up first (scripts/bootstrap.sh is idempotent and skips finished steps).
PY := .venv/bin/python

.PHONY: setup demo test lint bench lock

setup:
	@scripts/bootstrap.sh

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) scripts/compile_contracts.py --check
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	@# pytest exits 5 when it collected no tests: a suite that runs nothing proves nothing.
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

bench: setup
	$(PY) scripts/bench_registry.py

# Rewrite requirements/*.txt from pyproject.toml and constraints.txt (UPGRADE=1 to move versions);
# the next `make setup` installs the new lock.
lock:
	scripts/lock.sh
