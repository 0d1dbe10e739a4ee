"""modelrollout: a Kubernetes operator that rolls ML models out safely.

The package is layered so that imports only go downward:
``api`` (the resource model) <- ``core`` (pure decisions, no I/O) <- ``adapters``
(Prometheus, Kubernetes, routers, notifiers) <- ``controller`` and ``fast_path_loop`` (the shell,
typed by the adapters' protocols) <- ``handlers`` (kopf) <- ``wiring`` (composition) <- ``cli``.
"""

__version__ = "0.1.0"
