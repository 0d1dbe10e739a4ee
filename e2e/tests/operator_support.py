"""Pytest fixtures that run the operator for e2e tests: the CRDs installed once a session,
and an operator process watching the test's namespace.

The helpers behind them live in ``e2e/harness/`` (``operator_process.py``,
``scenario.py``, ``manifests.py``), where the benchmarks, the chaos and fuzz runs and the
demo use them too. The names re-exported below keep older imports of this module working.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.harness.cluster import REPO as ROOT
from e2e.harness.cluster import Cluster
from e2e.harness.manifests import GROUP, PLURAL, VERSION, rollout_manifest
from e2e.harness.operator_process import SLOW_OPERATOR, STARTED, OperatorProcess, delete_rollouts, free_port, install_crds
from e2e.harness.scenario import RolloutScenario

__all__ = ["GROUP", "PLURAL", "ROOT", "SLOW_OPERATOR", "STARTED", "VERSION", "OperatorProcess", "RolloutScenario", "crds",
           "delete_rollouts", "free_port", "install_crds", "operator", "rollout_manifest"]


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Cluster:
    install_crds(cluster)
    return cluster


@pytest.fixture
def operator(crds: Cluster, namespace: str) -> Iterator[OperatorProcess]:
    """The operator watching the test's namespace (its log tail is in a failing test's report)."""
    proc = OperatorProcess(crds, namespace).start()
    yield proc
    delete_rollouts(crds, namespace)
    proc.stop()
