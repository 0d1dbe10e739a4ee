"""Whether this replica may still act for the rollout whose action is running: a per-task guard.

With ``--shards`` (docs/operator.md#sharding) the owner of a rollout can change while one of
its actions runs: a promotion waits for pods for minutes. Checking ownership once, before
the action, would let a replica that lost the rollout keep writing Deployments and routes
behind the new owner's back. So the controller runs each action inside ``acting_for(check)``,
and the Kubernetes client (``adapters/kubeapi.py``) asks ``ensure_may_act`` before every
call it makes: the first call after the shard moved raises ``NotShardOwner`` and the action
stops there. A context variable carries the check, so the executor, the routers and the
waits in between need no rollout parameter, and tasks and worker threads started inside
an action inherit it.

``writes_in_flight`` counts the mutating calls a worker thread is still making (a
cancelled coroutine does not stop its thread's HTTP request): a replica that stops cleanly
waits for them before it hands its rollouts on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .errors import NotShardOwner

_CHECK: ContextVar[Callable[[], bool] | None] = ContextVar("modelrollout_may_act", default=None)
_lock = threading.Lock()
_in_flight = 0


@contextmanager
def acting_for(check: Callable[[], bool]) -> Iterator[None]:
    """Every Kubernetes call made inside (and in tasks started inside) asks ``check`` first."""
    token = _CHECK.set(check)
    try:
        yield
    finally:
        _CHECK.reset(token)


def ensure_may_act(what: str) -> None:
    """Raise ``NotShardOwner`` when the running action's rollout is another replica's now."""
    check = _CHECK.get()
    if check is not None and not check():
        raise NotShardOwner(f"{what}: not sent, the rollout belongs to another replica now (--shards)")


@contextmanager
def write_in_flight() -> Iterator[None]:
    """Around a mutating call, in the thread that makes it."""
    global _in_flight
    with _lock:
        _in_flight += 1
    try:
        yield
    finally:
        with _lock:
            _in_flight -= 1


def writes_in_flight() -> int:
    return _in_flight


__all__ = ["acting_for", "ensure_may_act", "write_in_flight", "writes_in_flight"]
