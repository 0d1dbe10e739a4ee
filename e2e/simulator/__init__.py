"""A fake fleet of model servers: exports the metrics contract (docs/design.md#metrics-contract) for
Deployments running on kwok's fake nodes, whose containers never run.

Traffic shares follow the router's real state in the apiserver (ready replicas
or HTTPRoute backend weights) and each pod's behaviour is scripted per
Deployment and image through an HTTP control API, so a test can degrade a
canary mid-rollout and watch the operator react through real Prometheus.
"""
