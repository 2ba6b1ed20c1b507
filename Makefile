# The two commands of the README. Both bootstrap .venv (and, on Debian 12, .runtime) first.
.PHONY: run test lint bootstrap clean

PY := .venv/bin/python

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	@.venv/bin/tfsp run

test: bootstrap
	@$(PY) -m pytest

lint: bootstrap
	@.venv/bin/ruff check .

clean:
	rm -rf .venv .runtime .tfsp
