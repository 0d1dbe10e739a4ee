"""Session-wide pytest rules for the whole suite (unit and e2e).

1. Every tool the selected tests need is built *before collection*. Test modules
   look for their tools when they are imported (``HELM = sorted(...glob("helm-*"))``),
   so a tool built later — by the ``cluster`` fixture — would come too late. Before
   collecting, ``e2e/build.sh`` (idempotent, cached under ~/.cache/modelrollout) builds
   the parts the selection needs: all of them when e2e tests are selected, helm and
   Prometheus' promtool for the unit tests that run them. A cached run prints one line;
   a cold build streams its progress. A build that fails stops the session: no test is
   run without its tools. MODELROLLOUT_SKIP_BUILD=1 checks instead of building (and
   fails just as loudly when a part is missing).

2. A test never skips. Everything a test needs is installed by the project itself
   (``make install``, ``e2e/build.sh``), so a skip can only hide a broken setup: a
   skipped test (or a module skipped at collection) is reported as a failure, with
   the skip's reason. (.ci/run also refuses a run that reports a skip.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
BUILD_SH = REPO / "e2e" / "build.sh"
E2E = REPO / "e2e"
UNIT = REPO / "tests"
ALL_PARTS = ("prometheus", "etcd", "kubernetes", "kwok", "gateway-api", "kwok-stages", "helm")
# Unit tests that run a tool the e2e build provides (no cluster needed): file name -> parts.
UNIT_TOOLS: dict[str, tuple[str, ...]] = {
    "test_chart.py": ("helm",),                      # helm lint / template
    "test_dashboard.py": ("helm", "prometheus"),     # helm template; promtool check rules
}
# A cold build of every part takes ~8 min on 2 idle cores; leave room for a loaded machine.
BUILD_TIMEOUT_S = 45 * 60
# What build.sh prints for a part that needs no work.
_CACHED_LINE = re.compile(r": cached in |prometheus: .* present \(|prometheus: done in 0 s$|all parts ready in ")


# ----------------------------------------------------------------------------- which tools


def _e2e_selected_by_marks(config: pytest.Config) -> bool:
    """False when ``-m`` deselects tests marked e2e (``make unit``: ``-m 'not e2e'``)."""
    markexpr = config.getoption("markexpr", "") or ""
    if not markexpr:
        return True
    try:
        from _pytest.mark.expression import Expression
    except ImportError:  # pytest's internals moved: build everything, to be safe
        return True
    try:
        return bool(Expression.compile(markexpr).evaluate(lambda name, **_: name == "e2e"))
    except (SyntaxError, pytest.UsageError, TypeError):  # pytest reports a bad -m itself; build, to be safe
        return True


def _arg_paths(config: pytest.Config) -> Iterator[Path]:
    base = config.invocation_params.dir
    for arg in config.args:
        path = arg.split("::", 1)[0]
        if not path or path.startswith("-"):
            continue
        p = Path(path)
        yield (p if p.is_absolute() else base / p).resolve()


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _unit_parts(path: Path) -> set[str]:
    files: Iterable[Path]
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = path.rglob("test_*.py")
    else:
        files = []
    parts: set[str] = set()
    for f in files:
        if _within(f, UNIT):
            parts.update(UNIT_TOOLS.get(f.name, ()))
    return parts


def needed_parts(config: pytest.Config) -> list[str]:
    """The e2e/build.sh parts the selected tests need, in build order."""
    e2e_marks = _e2e_selected_by_marks(config)
    parts: set[str] = set()
    for path in _arg_paths(config):
        if e2e_marks and (_within(path, E2E) or _within(E2E, path)):
            parts.update(ALL_PARTS)
        if _within(path, UNIT) or _within(UNIT, path):
            parts |= _unit_parts(path if _within(path, UNIT) else UNIT)
    return [p for p in ALL_PARTS if p in parts]


# ----------------------------------------------------------------------------- building


def _stderr(config: pytest.Config):  # type: ignore[no-untyped-def]
    """A context manager under which output reaches the terminal despite pytest's capture."""
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        import contextlib

        return contextlib.nullcontext()
    return capman.global_and_fixture_disabled()


def build_tools(parts: list[str]) -> None:
    """Run e2e/build.sh for ``parts``; quiet when all are cached, streamed otherwise."""
    env = dict(os.environ)
    t0 = time.monotonic()
    proc = subprocess.Popen(["bash", str(BUILD_SH), *parts], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)

    def kill() -> None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    watchdog = threading.Timer(BUILD_TIMEOUT_S, kill)
    watchdog.daemon = True
    watchdog.start()
    held: list[str] = []      # "cached" lines, shown only if something else happens
    streaming = False
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not streaming and _CACHED_LINE.search(line):
                held.append(line)
                continue
            if not streaming:
                streaming = True
                print(f"\n[tools] building what the selected tests need before collecting them: "
                      f"{' '.join(parts)} (e2e/build.sh; a cold build takes minutes)", file=sys.stderr, flush=True)
                sys.stderr.writelines(held)
            sys.stderr.write(line)
            sys.stderr.flush()
        rc = proc.wait()
    except BaseException:
        kill()
        proc.wait()
        raise
    finally:
        watchdog.cancel()
    elapsed = time.monotonic() - t0
    if rc != 0:
        if not streaming:
            sys.stderr.writelines(held)
        timed_out = elapsed >= BUILD_TIMEOUT_S
        pytest.exit(f"e2e/build.sh {' '.join(parts)} failed (exit {rc}{', timed out' if timed_out else ''}) after "
                    f"{elapsed:.0f}s: the tests that need these tools cannot run (output above)", returncode=3)
    if streaming:
        print(f"[tools] ready in {elapsed:.0f}s: {' '.join(parts)}", file=sys.stderr, flush=True)
    else:
        print(f"[tools] {' '.join(parts)}: cached ({elapsed:.1f}s)", file=sys.stderr, flush=True)


def check_tools(parts: list[str]) -> None:
    """MODELROLLOUT_SKIP_BUILD=1: every part must already be there."""
    script = (f'source "{REPO}/e2e/versions.sh"; '
              'for p in "$@"; do case "$p" in '
              'prometheus) [[ -x "$PROMETHEUS_BIN" ]] || echo "$p ($PROMETHEUS_BIN)"; continue ;; '
              'etcd) d=$ETCD_DIR ;; kubernetes) d=$K8S_DIR ;; kwok) d=$KWOK_DIR ;; helm) d=$HELM_DIR ;; '
              'gateway-api) d=$GATEWAY_API_DIR ;; kwok-stages) d=$KWOK_STAGES_DIR ;; esac; '
              '[[ -f "$d/.complete" ]] || echo "$p ($d)"; done')
    out = subprocess.run(["bash", "-c", script, "check", *parts], capture_output=True, text=True, check=True)
    missing = [m for m in out.stdout.splitlines() if m]
    if missing:
        pytest.exit("MODELROLLOUT_SKIP_BUILD=1 and the selected tests need parts that are not built: "
                    f"{', '.join(missing)} (run e2e/build.sh)", returncode=3)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if config.getoption("collectonly", False) or config.getoption("help", False):
        return
    parts = needed_parts(config)
    if not parts:
        return
    with _stderr(config):
        if os.environ.get("MODELROLLOUT_SKIP_BUILD") == "1":
            check_tools(parts)
        else:
            build_tools(parts)


# ----------------------------------------------------------------------------- a test never skips


def _skip_reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        path, lineno, reason = longrepr
        return f"{reason} ({path}:{lineno})"
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (f"this test skipped, and no test may skip here: everything a test needs is installed "
                           f"by the project (make install, e2e/build.sh), so a skip hides a broken setup.\n"
                           f"skip reason: {_skip_reason(report.longrepr)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.skipped:
        report.outcome = "failed"
        report.longrepr = (f"{collector.nodeid or collector.name} was skipped at collection, and no test may skip "
                           f"here (everything a test needs is installed by the project).\n"
                           f"skip reason: {_skip_reason(report.longrepr)}")
