# modelrollout: the two commands a newcomer needs are `make demo` and `make test`.
# Everything else is here for developers. All targets install what they need.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install unit test e2e bench bench-judgement bench-operator crds demo demo-offline clean

# A virtualenv next to the checkout; reinstalled only when pyproject.toml changes.
install: $(STAMP)
$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing modelrollout with test and bench extras"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	@$(PY) -m pip install --disable-pip-version-check -q -e '.[test,bench]'
	@touch $(STAMP)
	@echo "==> installed"

# Fast: the pure core, the CRD and the CLI. No cluster.
unit: install
	$(PY) -m pytest -m 'not e2e' -q

# Everything, e2e included (the e2e fixture builds and starts the local cluster when absent).
test: install
	$(PY) -m pytest -q

e2e: install
	$(PY) -m pytest -m e2e -q

crds: install
	$(PY) -m modelrollout.cli crd > crds/modelrollout.io_modelrollouts.yaml
	@echo "==> wrote crds/modelrollout.io_modelrollouts.yaml"

bench: install
	$(PY) bench/bench_core.py

bench-judgement: install
	$(PY) bench/bench_judgement.py

# Until the local-cluster demo lands, the demo is the decision core on the bundled examples.
demo: demo-offline

demo-offline: install
	$(PY) examples/demo_offline.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

-include e2e/cluster.mk

bench-operator: install
	$(PY) bench/bench_operator.py
