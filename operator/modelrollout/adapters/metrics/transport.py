"""The HTTP transport: batched queries to one Prometheus -> one Snapshot v1 per rollout.

``PrometheusMetricsSource.snapshots`` takes every rollout that looks now, plans the
batch's queries (``plan.py``), sends them and hands the answers to ``assembly.py``. What
is particular to talking to a Prometheus lives here:

* **Raises only for its own bugs, never judges.** Any Prometheus failure becomes a
  ``MetricsUnavailable`` value for the rollouts whose queries failed (every rollout, when
  Prometheus is down), and so does an answer that does not fit the snapshot format. Any
  other exception is a defect of the operator and is raised as ``OperatorBug``: it must
  never pass for "Prometheus unavailable" and count toward ``prometheusErrors``;
  an absent series is a ``None`` field, which the core turns into inconclusive / no data.
  Client exceptions are translated here, at the boundary (``_classify``).
* **One consistent read per batch.** The instant queries of a batch that use the default
  templates go out as *one* PromQL query (``label_replace(q0, "mr_query", "0", "", "") or
  label_replace(q1, …)``), split by that label on return. Prometheus answers one query
  from one snapshot of its head; separate queries do not agree with one another when a
  scrape is committed between them, and for a young series (a canary a few scrapes old)
  ``increase(correct)`` and ``increase(evaluated)`` read from different scrapes were seen
  to differ by half — a healthy canary's accuracy read as 0.48, "significant" at p=1e-34.
  Overridden templates are sent on their own, so a broken override fails only its rollouts.
* **Synchronous client in threads.** prometheus-api-client is requests-based; each query
  runs in a small dedicated thread pool (not the loop's default executor, which kopf
  uses for sync handlers) with three timeouts: Prometheus' own ``timeout`` parameter, the
  requests timeout, and an ``asyncio`` deadline that bounds the wait even if a socket hangs.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from pydantic import ValidationError
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from ...api.models import CustomCondition, DecisionPath
from ...core.snapshot import Snapshot
from ...errors import MetricsUnavailable, OperatorBug
from . import promql
from .assembly import Answer, SnapshotAssembler, parse_answer, range_bounds, single_value, without_none
from .promql import Pair
from .plan import PlannedQuery, QueryKey, QueryPlan, render_query, whole_seconds
from .range_reuse import RangeReuse
from .request import SnapshotRequest

log = logging.getLogger(__name__)

BUNDLE_LABEL = "mr_query"
"""Label that tags each sub-query's series in a bundled query (removed from the answers)."""

MAX_BUNDLE_CHARS = 200_000
"""A bundle longer than this is split (Prometheus reads queries from the URL; keep it sane)."""

QueryHook = Callable[[DecisionPath, float, bool], None]
"""``on_query(path, seconds, ok)``: called once per query sent to Prometheus."""


class _TransportDown(MetricsUnavailable):
    """Prometheus itself failed (connection, timeout, 5xx): the rest of the batch is skipped."""


class PrometheusMetricsSource:
    """Batched Prometheus queries -> Snapshot v1 per rollout. One instance per Prometheus URL."""

    def __init__(
        self,
        url: str,
        *,
        query_timeout: float = 5.0,
        max_concurrency: int = 8,
        min_rate_window: timedelta = timedelta(seconds=60),
        long_window_cache_ttl: timedelta | None = timedelta(seconds=60),
        long_window: timedelta = timedelta(hours=1),
        on_query: QueryHook | None = None,
        verify_tls: bool = True,
        headers: Mapping[str, str] | None = None,
        client: PrometheusConnect | None = None,
        bundle: bool = True,
    ) -> None:
        """
        query_timeout: seconds one query may take (Prometheus' ``timeout`` parameter, the
            HTTP timeout, and an asyncio deadline); a batch takes at most about this long
            when Prometheus is down (the first transport failure skips the rest).
        min_rate_window: shortest rate window of an anomaly-series point (≥ 4 scrape intervals).
        long_window_cache_ttl: answers of queries over windows ≥ ``long_window`` (the 24 h
            baseline) are reused for this long, measured on the batches' ``at`` — a 24 h
            window hardly moves in a minute, and the 1 s fast path would otherwise re-read it
            every second. None disables the cache.
        on_query: ``on_query(path, seconds, ok)`` once per query sent (operator metrics).
        bundle: send the batch's default-template instant queries as one query (see the
            module docstring); False sends one query per template and window.
        """
        self.bundle = bundle
        self.url = url.rstrip("/")
        self.query_timeout = float(query_timeout)
        self.min_rate_window = min_rate_window
        self.on_query = on_query
        self._cache_ttl = long_window_cache_ttl
        self._long_window_s = whole_seconds(long_window)
        self._cache: dict[str, tuple[datetime, Any]] = {}
        self._ranges = RangeReuse()
        self._client = client or PrometheusConnect(
            url=self.url, disable_ssl=not verify_tls, headers=dict(headers) if headers else None,
            retry=Retry(total=0, raise_on_status=False),  # our tick is the retry; never stall a batch
        )
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="prometheus")
        self._max_concurrency = max_concurrency
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def unreachable(self) -> str | None:
        """None when Prometheus answers a trivial query, else why not (blocking: for tools that
        check a URL once before a long run, such as ``modelrollout replay``)."""
        try:
            self._client.custom_query("1", params={"timeout": f"{self.query_timeout:g}s"})
        except Exception as exc:  # noqa: BLE001 — any failure is the answer
            return f"cannot query it ({type(exc).__name__}: {exc})"
        return None

    # ---- the one public operation --------------------------------------------------
    async def snapshots(self, requests: Sequence[SnapshotRequest], at: datetime,
                        *, path: DecisionPath = DecisionPath.TICK) -> dict[str, Snapshot | MetricsUnavailable]:
        """One snapshot (or the reason there is none) per request key. Never raises."""
        try:
            return await self._snapshots(requests, at, path)
        except OperatorBug:
            raise
        except Exception as exc:  # a defect of ours, not Prometheus being unavailable
            raise OperatorBug(f"building snapshots from {self.url} failed: {type(exc).__name__}: {exc}") from exc

    async def _snapshots(self, requests: Sequence[SnapshotRequest], at: datetime,
                         path: DecisionPath) -> dict[str, Snapshot | MetricsUnavailable]:
        if not requests:
            return {}
        plan = QueryPlan(requests, self.min_rate_window)
        down: list[_TransportDown] = []
        planned = plan.queries()
        custom_calls = [(r, i, c) for r in requests for i, c in enumerate(r.custom)]
        answers: dict[QueryKey, Any] = {}
        failures: dict[QueryKey, BaseException] = {}
        bundled: list[PlannedQuery] = []
        single: list[PlannedQuery] = []
        read_at: dict[QueryKey, datetime] = {}  # range answers reused from an earlier batch: their grid
        range_pairs: dict[QueryKey, frozenset[Pair]] = {}
        for q in planned:
            if q.key.is_range:
                reused = self._ranges.ask(q.key, plan.pairs[q.key], at)
                if reused is not None:
                    answers[q.key], read_at[q.key] = reused.answer, reused.at
                    continue
                range_pairs[q.key] = self._ranges.pairs_to_read(q.key)
                single.append(PlannedQuery(q.key, render_query(q.key, range_pairs[q.key])))
            elif (hit := self._cached(q, at)) is not None:
                answers[q.key] = hit[1]
            elif self.bundle and not q.key.is_range and q.key.template in (promql.DEFAULT_QUERIES.get(q.key.name),
                                                                        promql.EXACT_QUERIES.get(q.key.name)):
                bundled.append(q)
            else:
                single.append(q)
        bundles = _chunks(bundled, MAX_BUNDLE_CHARS)

        results = await asyncio.gather(
            *(self._answer_bundle(b, at, path, down) for b in bundles),
            *(self._answer(q, at, path, down) for q in single),
            *(self._custom(r, i, c, at, path, down) for r, i, c in custom_calls),
            return_exceptions=True,
        )
        for b, res in zip(bundles, results[: len(bundles)]):
            for q in b:
                if isinstance(res, BaseException):
                    failures[q.key] = res
                else:
                    answers[q.key] = res[q.key]
        rest = results[len(bundles):]
        for q, res in zip(single, rest[: len(single)]):
            if isinstance(res, BaseException):
                failures[q.key] = res
            else:
                answers[q.key] = res
                if q.key in range_pairs:
                    self._ranges.remember(q.key, range_pairs[q.key], at, res)
        custom: dict[str, dict[str, Any]] = {}
        custom_failures: dict[str, BaseException] = {}
        for (r, _, c), res in zip(custom_calls, rest[len(single):]):
            if isinstance(res, BaseException):
                custom_failures.setdefault(r.key, res)
            else:
                custom.setdefault(r.key, {})[c.name] = res

        out: dict[str, Snapshot | MetricsUnavailable] = {}
        for r in requests:
            failed = next((failures[k] for k in plan.needs[r.key] if k in failures), None) or custom_failures.get(r.key)
            if failed is not None:
                if not isinstance(failed, MetricsUnavailable):  # the client's errors are classified in _run
                    raise OperatorBug(f"query for {r.key} failed: {type(failed).__name__}: {failed}") from failed
                out[r.key] = MetricsUnavailable(str(failed))
                continue
            try:
                snap = SnapshotAssembler(r, answers, plan, at, read_at).snapshot()
                if r.key in custom:
                    snap = snap.model_copy(update={"custom": Snapshot.model_validate(
                        {"at": at, "custom": without_none(custom[r.key])}).custom})
                out[r.key] = snap
            except (MetricsUnavailable, ValidationError) as exc:  # an answer that does not fit the snapshot format
                log.warning("snapshot for %s: %s", r.key, exc)
                out[r.key] = MetricsUnavailable(f"Prometheus {self.url}: answer for {r.key} unusable: {exc}")
        return out

    # ---- queries ------------------------------------------------------------------
    def _cacheable(self, q: PlannedQuery) -> bool:
        return self._cache_ttl is not None and not q.key.is_range and q.key.window_s >= self._long_window_s

    def _cached(self, q: PlannedQuery, at: datetime) -> tuple[datetime, Any] | None:
        if not self._cacheable(q):
            return None
        hit = self._cache.get(q.promql)
        if hit is not None and timedelta(0) <= at - hit[0] <= self._cache_ttl:  # type: ignore[operator]
            return hit
        return None

    def _remember(self, q: PlannedQuery, at: datetime, parsed: Any) -> None:
        if self._cacheable(q):
            self._cache[q.promql] = (at, parsed)
            self._expire(at)

    async def _answer_bundle(self, qs: list[PlannedQuery], at: datetime, path: DecisionPath,
                             down: list[_TransportDown]) -> dict[QueryKey, Answer]:
        """Several instant queries as one (one consistent read); their answers by key.

        A refused bundle (a PromQL error Prometheus names) is retried query by query, so
        the error lands on the queries — and rollouts — it belongs to.
        """
        if len(qs) == 1:
            return {qs[0].key: await self._answer(qs[0], at, path, down)}
        text = " or ".join(f'label_replace({q.promql}, "{BUNDLE_LABEL}", "{i}", "", "")' for i, q in enumerate(qs))
        try:
            raw = await self._run("bundle", path, down, lambda: self._client.custom_query(
                text, params={"time": f"{at.timestamp():.3f}", "timeout": f"{self.query_timeout:g}s"},
                timeout=self.query_timeout))
        except _TransportDown:
            raise
        except MetricsUnavailable:
            answers = await asyncio.gather(*(self._answer(q, at, path, down) for q in qs), return_exceptions=True)
            out: dict[QueryKey, Answer] = {}
            for q, a in zip(qs, answers):
                if isinstance(a, BaseException):
                    raise a
                out[q.key] = a
            return out
        if not isinstance(raw, list):
            raise MetricsUnavailable(f"bundled query: unexpected answer {type(raw).__name__} (not a vector)")
        parts: list[list[Any]] = [[] for _ in qs]
        for row in raw:
            metric = dict(row.get("metric") or {})
            index = metric.pop(BUNDLE_LABEL, None)
            if index is not None and index.isdigit() and int(index) < len(qs):
                parts[int(index)].append({**row, "metric": metric})
        out = {}
        for q, rows in zip(qs, parts):
            parsed = parse_answer(q.key, rows)
            self._remember(q, at, parsed)
            out[q.key] = parsed
        return out

    async def _answer(self, q: PlannedQuery, at: datetime, path: DecisionPath, down: list[_TransportDown]) -> Answer:
        hit = self._cached(q, at)
        if hit is not None:
            return hit[1]
        if q.key.is_range:
            assert q.key.range_s is not None and q.key.step_s is not None
            start, end = range_bounds(at, q.key.range_s)
            raw = await self._run(q.key.name, path, down, lambda: self._client.custom_query_range(
                q.promql, start_time=start, end_time=end, step=f"{q.key.step_s}s",
                params={"timeout": f"{self.query_timeout:g}s"}, timeout=self.query_timeout))
        else:
            raw = await self._run(q.key.name, path, down, lambda: self._client.custom_query(
                q.promql, params={"time": f"{at.timestamp():.3f}", "timeout": f"{self.query_timeout:g}s"},
                timeout=self.query_timeout))
        parsed = parse_answer(q.key, raw)
        self._remember(q, at, parsed)
        return parsed

    def _expire(self, at: datetime) -> None:
        assert self._cache_ttl is not None
        for text in [t for t, (when, _) in self._cache.items() if not timedelta(0) <= at - when <= self._cache_ttl]:
            del self._cache[text]

    async def _custom(self, r: SnapshotRequest, index: int, c: CustomCondition, at: datetime, path: DecisionPath,
                      down: list[_TransportDown]) -> dict[str, float | None]:
        """A custom condition: per-rollout PromQL (not batched: it is the user's own text)."""
        out: dict[str, float | None] = {"value": None, "samples": None}
        for field_name, query in (("query", c.query), ("minSamplesQuery", c.min_samples_query)):
            if query is None:
                continue
            text = promql.render_custom(query, r.namespace, r.stable, r.canary)
            where = f"spec.analysis.custom[{index}].{field_name} ({c.name})"
            try:
                raw = await self._run(f"custom:{c.name}", path, down, lambda text=text: self._client.custom_query(
                    text, params={"time": f"{at.timestamp():.3f}", "timeout": f"{self.query_timeout:g}s"},
                    timeout=self.query_timeout))
            except _TransportDown:
                raise
            except MetricsUnavailable as exc:
                raise MetricsUnavailable(f"{where}: {exc}") from None
            out["value" if field_name == "query" else "samples"] = single_value(raw, where)
        return out

    def _semaphore(self) -> asyncio.Semaphore:
        """The concurrency limit of the running loop (a semaphore is bound to one loop;
        tests and CLIs may run several loops one after another)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self._max_concurrency))
        return self._slots[1]

    def _classify(self, name: str, exc: BaseException) -> MetricsUnavailable:
        """A client exception as the error the core sees; _TransportDown when Prometheus
        itself is down (connection, timeout, HTTP 5xx) rather than one query refused."""
        timed_out = f"Prometheus {self.url}: query {name} timed out after {self.query_timeout:g}s"
        if isinstance(exc, (asyncio.TimeoutError, requests.Timeout)):
            return _TransportDown(timed_out)
        if isinstance(exc, requests.ConnectionError):
            reason = _connection_reason(exc)
            if isinstance(reason, ReadTimeoutError):  # urllib3 wraps it when retries are off
                return _TransportDown(timed_out)
            return _TransportDown(f"Prometheus {self.url} unreachable: {_short(_clean(reason))}")
        if isinstance(exc, PrometheusApiClientException):
            text = _api_error(exc)
            if str(exc).startswith("HTTP Status Code 5"):
                return _TransportDown(f"Prometheus {self.url}: query {name}: {text}")
            return MetricsUnavailable(f"Prometheus {self.url}: query {name} refused: {text}")
        if isinstance(exc, MetricsUnavailable):
            return exc
        return MetricsUnavailable(f"Prometheus {self.url}: query {name} failed: {type(exc).__name__}: {_short(exc)}")

    async def _run(self, name: str, path: DecisionPath, down: list[_TransportDown], call: Callable[[], Any]) -> Any:
        """Run one blocking query in the pool; translate every failure to MetricsUnavailable."""
        async with self._semaphore():
            if down:  # Prometheus already failed in this batch: do not queue behind a dead server
                raise down[0]
            loop = asyncio.get_running_loop()
            t0 = time.monotonic()
            ok = False
            try:
                result = await asyncio.wait_for(loop.run_in_executor(self._executor, call),
                                                timeout=self.query_timeout + 0.5)
                ok = True
                return result
            except Exception as exc:  # noqa: BLE001 - every failure becomes data, see _classify
                error = self._classify(name, exc)
                if isinstance(error, _TransportDown):
                    down.append(error)
                raise error from None
            finally:
                if self.on_query is not None:
                    try:
                        self.on_query(path, time.monotonic() - t0, ok)
                    except Exception:  # noqa: BLE001 - accounting must never break a batch
                        log.exception("on_query hook failed")


def _chunks(queries: list[PlannedQuery], max_chars: int) -> list[list[PlannedQuery]]:
    """Bundles of at most ``max_chars`` of PromQL (queries stay in plan order: a
    condition's metrics sort together, so a split rarely separates a ratio's halves)."""
    out: list[list[PlannedQuery]] = []
    size = 0
    for q in queries:
        if not out or size + len(q.promql) > max_chars:
            out.append([])
            size = 0
        out[-1].append(q)
        size += len(q.promql) + 60
    return out


def _connection_reason(exc: BaseException) -> BaseException:
    """The urllib3 error under a requests.ConnectionError (MaxRetryError.reason), if any."""
    inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    reason = getattr(inner, "reason", None)
    return reason if isinstance(reason, BaseException) else inner


def _api_error(exc: PrometheusApiClientException) -> str:
    """'HTTP 400: 1:61: parse error: …' from the client's "HTTP Status Code 400 (b'{json}')"."""
    text = str(exc)
    match = re.match(r"HTTP Status Code (\d+) \((.*)\)$", text, re.S)
    if not match:
        return _short(text)
    code, body = match.groups()
    detail = body
    try:
        payload = json.loads(ast.literal_eval(body))
        detail = payload.get("error") or payload.get("errorType") or body
    except (ValueError, SyntaxError, TypeError, AttributeError):
        pass
    return _short(f"HTTP {code}: {detail}")


def _clean(exc: BaseException) -> str:
    """'Failed to establish a new connection: [Errno 111] Connection refused', without the
    object reprs and URLs urllib3 puts around it."""
    text = str(exc)
    if "object at 0x" in text and ": " in text:
        text = text.split(": ", 1)[1]
    return text


def _short(exc: BaseException | str, limit: int = 300) -> str:
    text = str(exc).replace("\\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["BUNDLE_LABEL", "MAX_BUNDLE_CHARS", "PrometheusMetricsSource", "QueryHook"]
