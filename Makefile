# Citizen Vault — the two commands:
#   make run    serve on the embedded defaults (http://127.0.0.1:8000), with a demo citizen
#   make test   install what the tests need (Debian and PyPI packages) and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# The issuer (links in mail, later the OIDC issuer) follows HOST/PORT unless set explicitly.
export VAULT_ISSUER ?= http://$(HOST):$(PORT)

.PHONY: run test venv clean

$(BIN)/vault: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

venv: $(BIN)/vault

run: $(BIN)/vault
	$(BIN)/vault db upgrade
	$(BIN)/vault demo seed
	$(BIN)/vault serve --host $(HOST) --port $(PORT)

test:
	PYTHON=$(PYTHON) VENV=$(VENV) scripts/test.sh $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
