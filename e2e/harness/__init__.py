"""Python helpers for driving the local e2e cluster from tests and by hand."""

from e2e.harness.cluster import Cluster
from e2e.harness.simulator_client import SimulatorClient

__all__ = ["Cluster", "SimulatorClient"]
