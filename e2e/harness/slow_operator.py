"""The operator with slow phased actions, for tests that SIGKILL it in the middle of one.

    python -m e2e.harness.slow_operator run --action-delay 1.5 [any ``modelrollout run`` option]

The real operator — the same options (``modelrollout.cli.run``'s), the same composition
(``modelrollout.wiring``), a real process that can be SIGKILLed — with its cluster
executor wrapped in ``SlowExecutor``, which pauses before each phased action (the start,
each promotion batch, each rollback phase). The pause makes "mid-rollback" and
"mid-promotion" moments wide enough to hit reliably (``test_operator_resilience.py``,
``e2e/chaos.py``). It lives here, not behind an option of the product: the operator
ships no fault injection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import click

from modelrollout import cli, wiring
from modelrollout.api.models import ModelRolloutSpec, ModelRolloutStatus
from modelrollout.controller import Executor
from modelrollout.core.observations import Observation
from modelrollout.core.snapshot import CanaryHealth


class SlowExecutor:
    """An ``Executor`` that waits ``delay`` seconds before each phased action, then does it."""

    def __init__(self, inner: Executor, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    async def start_rollout(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus, *,
                            rollout: str | None = None) -> Observation:
        await asyncio.sleep(self.delay)
        return await self.inner.start_rollout(ns, spec, status, rollout=rollout)

    async def set_weight(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus, percent: int) -> None:
        await self.inner.set_weight(ns, spec, status, percent)

    async def prepare_canary(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus, percent: int,
                             replicas: int | None = None) -> None:
        await self.inner.prepare_canary(ns, spec, status, percent, replicas)

    async def mirror_traffic(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus, percent: int,
                             size_percent: int, replicas: int | None = None) -> None:
        await self.inner.mirror_traffic(ns, spec, status, percent, size_percent, replicas)

    async def promote(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus) -> Observation:
        await asyncio.sleep(self.delay)
        return await self.inner.promote(ns, spec, status)

    async def rollback_phase(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus,
                             phase: int) -> Observation:
        await asyncio.sleep(self.delay)
        return await self.inner.rollback_phase(ns, spec, status, phase)

    async def canary_health(self, ns: str, canary: str, progress_deadline_seconds: int) -> CanaryHealth:
        return await self.inner.canary_health(ns, canary, progress_deadline_seconds)


@click.group()
def main() -> None:
    """The modelrollout operator with slow phased actions (e2e fault injection)."""


@main.command(params=[*cli.run.params, click.Option(
    ["--action-delay"], type=float, required=True,
    help="seconds to pause before each phased action (start, promotion batch, rollback phase)")])
def run(action_delay: float, **options: Any) -> None:
    """``modelrollout run``, with every phased action delayed by ``--action-delay`` seconds."""
    wiring.run(cli.operator_config(**options), wrap_executor=lambda inner: SlowExecutor(inner, action_delay))


if __name__ == "__main__":
    main()
