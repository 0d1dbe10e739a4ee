"""JSON webhooks (Slack compatible): best effort, bounded, and never in the way.

``notify`` only *schedules* the deliveries and returns at once, so a slow or dead
endpoint can never delay the rollback that triggered it. Each delivery is a POST of
``{"text": …, "kind": …, **payload}`` — Slack's incoming webhooks read ``text``,
everything else is there for machines — with a per-attempt timeout, up to
``retries`` further attempts on failure (exponential backoff), and a log line when it
finally fails. Nothing is raised.

The notifier keeps a reference to every task in flight (asyncio holds only weak
ones), and ``drain``/``close`` let a shutdown or a test wait for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp

log = logging.getLogger("modelrollout.webhook")


def webhook_body(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    text = payload.get("text") or payload.get("message") or kind
    return {**payload, "kind": kind, "text": str(text)}


class WebhookNotifier:
    """``Notifier`` posting to each of ``urls``.

    ``timeout`` bounds one attempt (seconds); ``retries`` is how many more attempts
    follow a failed one (so at most ``1 + retries`` POSTs per URL); the n-th retry
    waits ``backoff × 2^(n−1)`` seconds. A 2xx answer is success; anything else,
    a timeout or a connection error is a failure.
    """

    def __init__(self, urls: Sequence[str], timeout: float = 2.0, retries: int = 3, backoff: float = 0.5) -> None:
        self.urls = [u for u in urls if u]
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self._tasks: set[asyncio.Task[bool]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    async def notify(self, kind: str, payload: dict[str, Any]) -> None:
        body = webhook_body(kind, payload)
        for url in self.urls:
            task = asyncio.get_running_loop().create_task(self._deliver(url, body), name=f"webhook {kind} {url}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._session_loop = loop
        return self._session

    async def _deliver(self, url: str, body: dict[str, Any]) -> bool:
        """POST with retries; True when delivered. Never raises (but honours cancellation)."""
        last = ""
        for attempt in range(1 + self.retries):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                async with self._get_session().post(url, json=body) as response:
                    if 200 <= response.status < 300:
                        return True
                    last = f"HTTP {response.status}"
            except asyncio.TimeoutError:
                last = f"timed out after {self.timeout}s"
            except aiohttp.ClientError as exc:
                last = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001 - a notifier must never raise
                last = f"{type(exc).__name__}: {exc}"
            log.debug("webhook %s attempt %d failed: %s", url, attempt + 1, last)
        log.warning("webhook %s (%s) not delivered after %d attempts: %s", url, body.get("kind"), 1 + self.retries, last)
        return False

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the deliveries in flight (at most ``timeout`` seconds)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def close(self, timeout: float | None = 5.0) -> None:
        """Drain, cancel what is left, close the HTTP session."""
        await self.drain(timeout)
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None and not self._session.closed:
            await self._session.close()
