"""End-to-end harness: a local control plane, Prometheus and a metrics simulator.

A package so that `python -m e2e.simulator` and the test modules import the
harness helpers by one unambiguous name.
"""
