"""modelrollout: a Kubernetes operator that rolls ML models out safely.

The package is layered so that imports only go downward:
``api`` (the resource model) <- ``core`` (pure decisions, no I/O) <- ``adapters``
(Prometheus, Kubernetes, routers, notifiers) <- ``handlers`` (kopf wiring) and ``cli``.
"""

__version__ = "0.1.0"
