"""WebhookNotifier against tiny aiohttp servers on 127.0.0.1: retries, timeouts, never blocking."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from modelrollout.adapters.notifiers.webhook import WebhookNotifier, webhook_body

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook"


def test_fails_twice_then_succeeds_in_three_attempts():
    async def main() -> tuple[list[dict], float]:
        seen: list[dict] = []

        async def handler(request: web.Request) -> web.Response:
            seen.append(await request.json())
            return web.Response(status=500 if len(seen) <= 2 else 200)

        runner, url = await serve(handler)
        notifier = WebhookNotifier([url], timeout=2.0, retries=3, backoff=0.01)
        started = time.perf_counter()
        await notifier.notify("rolledBack", {"message": "rolled back: latency", "score": 0.9})
        returned_after = time.perf_counter() - started
        assert notifier.in_flight == 1
        await notifier.drain(5)
        await notifier.close()
        await runner.cleanup()
        return seen, returned_after

    seen, returned_after = asyncio.run(main())
    assert len(seen) == 3
    assert seen[0] == {"message": "rolled back: latency", "score": 0.9, "kind": "rolledBack",
                       "text": "rolled back: latency"}
    assert returned_after < 0.05, "notify only schedules the delivery"


def test_a_hanging_endpoint_is_cut_off_by_the_timeout_and_never_raises():
    async def main() -> tuple[int, float, float]:
        calls = 0
        release = asyncio.Event()

        async def handler(request: web.Request) -> web.Response:
            nonlocal calls
            calls += 1
            await asyncio.wait_for(release.wait(), 30)  # hangs until the test is done
            return web.Response()

        runner, url = await serve(handler)
        notifier = WebhookNotifier([url], timeout=0.3, retries=1, backoff=0.05)
        started = time.perf_counter()
        await notifier.notify("promoted", {"text": "promoted"})
        returned_after = time.perf_counter() - started
        await notifier.drain(10)
        elapsed = time.perf_counter() - started
        await notifier.close()
        release.set()
        await runner.cleanup()
        return calls, returned_after, elapsed

    calls, returned_after, elapsed = asyncio.run(main())
    assert calls == 2                      # first attempt + one retry
    assert returned_after < 0.05
    assert 0.6 <= elapsed < 2.0            # 2 × 0.3 s timeout + 0.05 s backoff, not 30 s


def test_unreachable_endpoint_is_logged_not_raised(caplog):
    async def main() -> None:
        notifier = WebhookNotifier(["http://127.0.0.1:9/hook"], timeout=0.5, retries=1, backoff=0.01)
        await notifier.notify("rolledBack", {"message": "m"})
        await notifier.drain(5)
        await notifier.close()

    asyncio.run(main())
    assert "not delivered after 2 attempts" in caplog.text


def test_body_is_slack_compatible():
    assert webhook_body("promoted", {"text": "ok", "a": 1}) == {"text": "ok", "a": 1, "kind": "promoted"}
    assert webhook_body("x", {})["text"] == "x"
