# The two commands of the README. Both bootstrap .venv (and, on Debian 12, .runtime) first.
.PHONY: run serve test lint bootstrap clean

PY := .venv/bin/python

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	@.venv/bin/tfsp run

# Serve every pushed model in the foreground (gRPC 8500, REST 8501) until Ctrl-C.
serve: bootstrap
	@.venv/bin/tfsp deploy models-config --root $(CURDIR)/.tfsp/serving --output .tfsp/models.config
	@.venv/bin/tfsp serve --port=8500 --rest_api_port=8501 --model_config_file=.tfsp/models.config

test: bootstrap
	@$(PY) -m pytest

lint: bootstrap
	@.venv/bin/ruff check .

clean:
	rm -rf .venv .runtime .tfsp
