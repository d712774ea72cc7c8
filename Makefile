# Two commands a new machine needs (see README): `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEV := .dev

.PHONY: run test venv tools lint typecheck unit clean

$(BIN)/ecr-ptc-webhook: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

venv: $(BIN)/ecr-ptc-webhook

## run: start the webhook on https://127.0.0.1:8443 with examples/config.yaml and a fresh local certificate
run: venv
	test -f $(DEV)/certs/tls.crt || $(BIN)/ecr-ptc-webhook certs --out $(DEV)/certs --dns-name localhost --ip 127.0.0.1
	$(BIN)/ecr-ptc-webhook serve --config examples/config.yaml \
	  --tls-cert $(DEV)/certs/tls.crt --tls-key $(DEV)/certs/tls.key --host 127.0.0.1 --port 8443

## tools: helm, kubectl and the other real tools the integration tests use
tools:
	bash hack/install-tools.sh
	bash hack/install-registry-tools.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest

## test: everything CI runs, from a clean clone
test: venv tools lint typecheck unit

clean:
	rm -rf $(VENV) $(DEV) .tools .mypy_cache .pytest_cache .ruff_cache
