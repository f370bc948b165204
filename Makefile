# Two commands for a fresh machine: `make run` and `make test`. Both install what is missing first.
VENV ?= .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= egl

.PHONY: setup run test test-all lint bench clean

setup:
	@bash scripts/setup.sh

# The dashboard: web UI at http://$VLA_HOST:$VLA_PORT/ (default 127.0.0.1:7860), API docs at /docs.
run: setup
	$(PY) run.py serve

test: setup
	$(PY) -m pytest -m "not slow" -q

test-all: setup
	$(PY) -m pytest -q

# ruff, then the layers contract of pyproject.toml (import-linter): an import pointing up fails.
lint: setup
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache
