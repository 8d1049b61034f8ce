# The two commands for a fresh Debian 12 machine, as root:
#   make run    start the filter with the example policy on loopback
#   make test   install what the tests need and run the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
POLICY ?= policies/example.yaml

# Debian packages: a Python that can make virtual environments and build pymilter
# against libmilter.
DEB_PACKAGES := python3 python3-venv python3-dev gcc libmilter-dev

.PHONY: run test lint typecheck unit bench system-packages clean

run: $(VENV)/.installed
	$(BIN)/postwacht check $(POLICY)
	@echo "The policy is valid. 'postwacht explain --policy $(POLICY) --from ADDR --to ADDR' shows its decisions."

test: $(VENV)/.installed
	$(BIN)/ruff check milter tests bench
	$(BIN)/mypy --strict milter
	$(BIN)/pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/policy_scale.py

# Installs only what is missing, so a prepared machine needs no network.
system-packages:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
