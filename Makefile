# leadline: `make run` starts everything, `make test` runs every test. Both install what is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint audit secrets-baseline check-db clean-var

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/flask --app api stack

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Style (flake8, isort), security lint (bandit, settings in .bandit.yaml) and a secret scan against
# the reviewed .secrets.baseline (.ci/check_secrets.py).
lint: install
	$(BIN)/flake8
	$(BIN)/isort --check-only --diff .
	$(BIN)/bandit -q -c .bandit.yaml -r .
	$(BIN)/python .ci/check_secrets.py

# Known-vulnerable dependencies: everything requirements*.txt resolve to, against PyPI's advisory
# service (needs the network; --strict fails when a package could not be checked).
audit: install
	$(BIN)/pip-audit --strict -r requirements.txt -r requirements-dev.txt

# After reviewing a detect-secrets finding that is not a secret: record it in the baseline.
secrets-baseline: install
	$(BIN)/python .ci/check_secrets.py --update

check-db: install
	$(BIN)/flask --app api check-db

# Stops the embedded services and removes their data (PostgreSQL, Redis, media) under ./var.
clean-var: install
	$(BIN)/python -c "import embedded; embedded.stop_all()"
	rm -rf var
