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

.PHONY: run test venv lock messages clean

$(BIN)/vault: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	@touch $@

venv: $(BIN)/vault

run: $(BIN)/vault
	$(BIN)/vault db upgrade
	$(BIN)/vault demo seed
	$(BIN)/vault serve --host $(HOST) --port $(PORT)

test:
	PYTHON=$(PYTHON) VENV=$(VENV) scripts/test.sh $(PYTEST_ARGS)

# constraints.txt: the newest versions pyproject.toml allows, as a fresh install gets them today.
# Then run `make test` before committing it.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e ".[test]"
	{ sed -n '/^#/p' constraints.txt; .lock-venv/bin/python -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .lock-venv

# The English catalogue after sentences changed in the code or the templates: extract the French
# (babel.cfg), then merge into vault/web/locale/en/LC_MESSAGES/messages.po. New sentences arrive
# with an empty English, reworded ones as fuzzy: translate them there (the tests refuse both).
messages: $(BIN)/vault
	mkdir -p var
	$(BIN)/pybabel -q extract -F babel.cfg --no-wrap --add-location=file --project="Citizen Vault" \
		--version="$$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)" \
		--copyright-holder="Citizen Vault contributors" -o var/messages.pot vault
	$(BIN)/pybabel -q update --no-wrap --ignore-obsolete --ignore-pot-creation-date -i var/messages.pot -d vault/web/locale -l en

clean:
	rm -rf $(VENV) var .pytest_cache
