"""End-to-end tests that run against the local cluster (see docs/local-cluster.md)."""
