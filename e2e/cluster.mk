# Local e2e cluster (included from the top-level Makefile). See docs/local-cluster.md.
#   make cluster-build   build/fetch every binary once (cached in ~/.cache/modelrollout)
#   make cluster-up      start etcd, the control plane, kwok, Prometheus and the simulator
#   make cluster-down    stop them (only the pids recorded at start) and drop the data
#   make cluster-status  what is running, and the env vars to use it by hand

.PHONY: cluster-build cluster-up cluster-down cluster-status

cluster-build:
	@bash e2e/build.sh

cluster-up: install cluster-build
	@bash e2e/cluster.sh up

cluster-down:
	@bash e2e/cluster.sh down

cluster-status:
	@bash e2e/cluster.sh status
