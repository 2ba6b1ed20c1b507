# The two commands of the README. Both bootstrap .venv (and, on Debian 12, .runtime) first.
.PHONY: run serve test lint bootstrap clean

PY := .venv/bin/python

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	@.venv/bin/tfsp run

# The tfsp home, as the CLI finds it: $TFSP_HOME, else .tfsp.
HOME_DIR = $(abspath $(or $(TFSP_HOME),.tfsp))

# Serve every model pushed so far in the foreground (gRPC 8500, REST 8501) until Ctrl-C.
serve: bootstrap
	@.venv/bin/tfsp deploy models-config --pushed-only --root $(HOME_DIR)/serving --output $(HOME_DIR)/models.config
	@.venv/bin/tfsp serve --port=8500 --rest_api_port=8501 --model_config_file=$(HOME_DIR)/models.config

test: bootstrap
	@$(PY) -m pytest

lint: bootstrap
	@.venv/bin/ruff check .

clean:
	rm -rf .venv .runtime .tfsp
