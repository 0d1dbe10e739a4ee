"""Durations as users write them in manifests (``30s``, ``15m``, ``1h30m``).

Kubernetes users expect Go-style duration strings, and the CRD's CEL rules can check
them with ``duration()``; inside the operator we want ``timedelta`` so that arithmetic
on the clock is exact. This module is the one place that converts between the two.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

# The subset of Go's time.ParseDuration that makes sense for rollouts: no sign, no µs/ns.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> timedelta:
    """Parse ``1h30m``-style strings (and plain seconds as numbers) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; write it like 30s, 15m or 1h")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{value} is negative; durations are >= 0")
        return _bounded(float(value), value)
    if not isinstance(value, str) or not re.fullmatch(DURATION_PATTERN, value.strip()):
        raise ValueError(f"{value!r} is not a duration; write it like 30s, 15m, 1h or 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(value.strip()))
    return _bounded(seconds, value)


MAX_DURATION = timedelta(days=3650)
"""Ten years: far beyond any step or window, and far inside what ``timedelta`` (and Go) can hold."""


def _bounded(seconds: float, written: Any) -> timedelta:
    """The CRD only checks the pattern, so ``99999999999h`` gets this far: say it is too large
    rather than overflow (which would crash validation instead of naming the field)."""
    if not seconds <= MAX_DURATION.total_seconds():  # also catches inf and nan
        raise ValueError(f"{written!r} is too large; durations are at most {MAX_DURATION.days * 24}h")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a timedelta in the shortest Go-style form (``90s`` -> ``1m30s``)."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    parts: list[str] = []
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if seconds:
        parts.append(f"{seconds}s")
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="always"),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
"""A manifest duration: parsed to ``timedelta``, serialised back to ``15m`` form."""
