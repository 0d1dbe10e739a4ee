"""The shell's own small rules (no cluster)."""

from __future__ import annotations

import logging

from modelrollout.wiring import QuietEventHandlers


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


def test_only_the_watch_event_handlers_successes_are_dropped_from_kopfs_log() -> None:
    quiet = QuietEventHandlers()
    assert not quiet.filter(record("Handler 'canary_pod' succeeded."))
    assert not quiet.filter(record("Handler 'wake' succeeded."))
    assert quiet.filter(record("Handler 'canary_pod' failed with an exception.", logging.ERROR))
    assert quiet.filter(record("Handler 'rollout' succeeded."))
    assert quiet.filter(record("Handler 'awake' succeeded."))
    assert quiet.filter(record("Timer 'x' succeeded."))
