# The two commands for a fresh Debian 12 machine, as root:
#   make run    start the filter with the example policy on loopback (milter on
#               127.0.0.1:8894, metrics on 127.0.0.1:9464, state in ./run-state)
#   make test   install what the tests need and run the whole suite
# And to run it as a service on this machine (deploy/install.sh says what goes where):
#   make install    the program in PREFIX, the command in BINDIR, a postwacht user, the
#                   policy (never over an existing one) and the systemd units, enabled
#                   but not started; again later: upgrades in place
#   make uninstall  removes all that but the policy and the records
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
POLICY ?= policies/example.yaml
STATE ?= run-state
MTA ?= $(shell hostname)

# Debian packages: a Python that can make virtual environments and build pymilter
# against libmilter; the tests also start a real Postfix, a DNSSEC lab (nsd serves
# zones that ldns-signzone signs, unbound validates) and a private PostgreSQL 15 cluster
# for the shared records (postgresql), and check the deploy kit with promtool
# (prometheus) and systemd-analyze (systemd); the README's first hour sends its test
# mail with swaks. The web review is tested in a real browser
# (chromium, driven by Playwright) behind the deploy kit's reverse proxy (nginx).
DEB_RUN := python3 python3-venv python3-dev gcc libmilter-dev
DEB_TEST := $(DEB_RUN) postfix swaks nsd unbound ldnsutils prometheus systemd postgresql \
	chromium nginx
DEB_PACKAGES ?= $(DEB_TEST)

# Where make install puts things (give another on the command line: make install
# PREFIX=/srv/postwacht; make uninstall needs the same). The environment's PREFIX, which
# some shells set for other purposes, is not taken.
PREFIX := /opt/postwacht
BINDIR := /usr/local/bin
SYSCONFDIR := /etc/postwacht
UNITDIR := /etc/systemd/system
INSTALL_DIRS = --prefix '$(PREFIX)' --bindir '$(BINDIR)' --sysconfdir '$(SYSCONFDIR)' \
	--unitdir '$(UNITDIR)'

.PHONY: run test bench system-packages install uninstall clean

run: DEB_PACKAGES = $(DEB_RUN)
run: $(VENV)/.installed
	$(BIN)/postwacht check $(POLICY)
	@echo "Attach Postfix with the lines in deploy/postfix/main.cf (see README, 'Attaching Postfix')."
	@echo "Review held mail with: $(BIN)/postwacht quarantine --state $(STATE) list"
	@# The filter, and (as root) beside it the release helper that carries out reviewers'
	@# releases and deletes once the filter has made its records store; both stop together.
	@$(BIN)/postwacht serve --policy $(POLICY) --state $(STATE) --mta $(MTA) & serve=$$!; \
	trap 'kill $$serve $$helper 2>/dev/null; wait' EXIT; \
	until $(BIN)/postwacht status --state $(STATE) >/dev/null 2>&1; do \
	  kill -0 $$serve 2>/dev/null || exit 1; sleep 0.2; done; \
	if [ "$$(id -u)" = 0 ]; then \
	  $(BIN)/postwacht release-helper --socket $(abspath $(STATE))/release.sock \
	    --mta $(MTA) --state $(STATE) --socket-group root & helper=$$!; \
	else echo "not root: releases wait for a release helper (see README)"; fi; \
	wait $$serve

test: DEB_PACKAGES = $(DEB_TEST)
test: $(VENV)/.installed
	$(BIN)/ruff check milter tests bench
	$(BIN)/mypy --strict milter
	$(BIN)/pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/policy_scale.py
	$(BIN)/python bench/discovery_latency.py
	$(BIN)/python bench/correspondents.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/steady_state.py

install: DEB_PACKAGES = $(DEB_RUN)
install: system-packages
	@$(SHELL) deploy/install.sh install $(INSTALL_DIRS)

# FORCE=yes: uninstall even while Postfix still sends mail to the filter.
uninstall:
	@FORCE=$(FORCE) $(SHELL) deploy/install.sh uninstall $(INSTALL_DIRS)

# Installs only what is missing, so a prepared machine needs no network.
system-packages:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" != 0 ]; then \
	  echo "missing Debian packages:$$missing (as root, make installs them)" >&2; exit 1; \
	fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) $(STATE) .pytest_cache .mypy_cache .ruff_cache .hypothesis
