"""The metrics source: one batch of Prometheus queries -> one Snapshot v1 per rollout.

One module per job, imports going downward in this order:

* ``promql.py``     the PromQL text: templates, safe label matchers, answer parsing (pure);
* ``catalogue.py``  what each condition of ``core.conditions`` reads, and how its answers
  become snapshot fields (one entry per condition);
* ``request.py``    ``SnapshotRequest``: what one rollout asks on one look, validated;
* ``base.py``       the ``MetricsSource`` / ``MetricsBatchSource`` protocols the shell uses;
* ``plan.py``       the batch's queries, shared across rollouts (pure);
* ``assembly.py``   a batch's answers -> each rollout's snapshot (pure);
* ``range_reuse.py`` range answers shared by the batches of one tick instant (pure);
* ``transport.py``  ``PrometheusMetricsSource``: HTTP, bundling, timeouts, error translation;
* ``batching.py``   ``BatchingMetricsSource`` (concurrent ticks -> one batch) and
  ``PrometheusRouter`` (one batching source per Prometheus URL).

The adapter never judges what it reads (thresholds live in the core) and never plans a
window (``core.windows`` does). This package's ``__init__`` imports nothing, so the
shell can import ``base`` without loading the HTTP client. docs/prometheus.md is the
reference.
"""
