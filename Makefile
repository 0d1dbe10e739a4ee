# modelrollout: the two commands a newcomer needs are `make demo` and `make test`.
# Everything else is here for developers. All targets install what they need.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install unit test e2e bench bench-judgement bench-shadow bench-operator bench-reaction bench-scale crds image demo demo-down demo-offline clean chaos

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

# The operator's OCI image, built without Docker from Debian's packages and PyPI
# (docs/image.md); prints the OCI archive's path (cached by a hash of the sources).
image: install
	@bash operator/image/build.sh

bench: install
	$(PY) bench/bench_core.py
	$(PY) bench/bench_fast_path.py

bench-judgement: install
	$(PY) bench/bench_judgement.py

# The same challengers with and without a shadow step first (docs/shadow.md): user requests
# answered by a degraded challenger before its rollback (~2 min).
bench-shadow: install
	$(PY) bench/bench_shadow.py $(BENCH_SHADOW_ARGS)

# The demo: the local cluster (built on first use, started if absent), the operator, and two
# rollouts watched live -- one promoted, one rolled back (demo/run.py). CI=1 or
# DEMO_ARGS=--ci: non-interactive, cleans up at the end, exit 0 only on the expected ends.
# (A running cluster needs no build step: that skips waiting on another build's lock.)
demo: install
	@bash e2e/cluster.sh status >/dev/null 2>&1 || $(MAKE) --no-print-directory cluster-build
	@$(PY) demo/run.py $(DEMO_ARGS)

# Stops the demo's operator, deletes its namespace, and the cluster if the demo started it.
demo-down: install
	@$(PY) demo/run.py down $(DEMO_ARGS)

# No cluster: the decision core on the bundled example snapshots, as a table.
demo-offline: install
	$(PY) examples/demo_offline.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

-include e2e/cluster.mk

bench-operator: install
	$(PY) bench/bench_operator.py

# Reaction time: breach visible in Prometheus -> canary at 0, ours (fast path, pod watch) vs Argo
# Rollouts v1.10.1 built from its Go module (first run builds it: minutes). Needs the cluster.
bench-reaction: install cluster-up
	$(PY) bench/bench_reaction.py $(BENCH_ARGS)

# Scale: N = 100, 300, 1,000 rollouts on one operator (fast-path cycle, tick lag, reaction,
# CPU of every process, RSS, queries and API calls per rollout); docs/benchmarks.md.
# Options: BENCH_SCALE_ARGS='--counts 100,300 --breaches 5 --quiet-seconds 60'.
bench-scale: install cluster-up
	$(PY) bench/bench_scale.py $(BENCH_SCALE_ARGS)

# SIGKILL chaos (docs/chaos.md): rollouts of every kind side by side while the operator is
# killed at random moments (>= 200 times), with the invariants sampled every 250 ms. Ends
# with "chaos: K kills, F faults, R rollouts, V invariant violations, worst recovery S s";
# exit 1 on a violation. Options: CHAOS_ARGS='--kills 50 --seed 7 --rollouts 3 --budget-seconds 900'.
chaos: install cluster-up
	$(PY) -m e2e.chaos $(CHAOS_ARGS)

# Fuzzed specs (docs/fuzz.md): hypothesis-generated ModelRollouts, each sent to the real
# apiserver as a dry-run create (rejected naming the field, or accepted and checked against
# the operator's own validation), then a sample created for real under one operator process.
# Ends with "fuzz: N specs, A accepted, R rejected (F naming the field), ..."; exit 1 when a
# check fails. Options: FUZZ_ARGS='--count 300 --seed 7 --runs 4 --json /tmp/fuzz.json'.
.PHONY: fuzz
FUZZ_ARGS ?= --count 10000 --seed 1
fuzz: install cluster-up
	$(PY) -m e2e.fuzz_specs $(FUZZ_ARGS)
