"""Fixtures for the chatmesh integration tests.

`node` starts a fresh `chatmesh serve` on a free loopback port for each test. Per-test config:

    @pytest.mark.chatmesh(engineio={"ping_interval": 300}, limits={"max_payload": 1000})
    def test_x(node): ...

or `node_factory(engineio=..., limits=...)` for several nodes / configs in one test.
The node is always stopped by pid in teardown (SIGTERM, then SIGKILL after 5 s); when the
test failed, its stderr is printed.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from chatmesh_testkit import FIGURES, ChatmeshNode, RecordingClient  # noqa: E402

PR_SET_CHILD_SUBREAPER = 36


def _raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def _become_subreaper():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except Exception:
        pass


def _children() -> list[int]:
    me, kids = os.getpid(), []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me:
            kids.append(int(d))
    return kids


def _reap_children():
    """Stop and reap whatever is still our child (our nodes, orphans re-parented to us)."""
    kids = _children()
    for pid in kids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while _children() and time.monotonic() < deadline:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            break
        time.sleep(0.05)
    for pid in _children():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        while True:  # every child is dead or dying now: reap them all
            os.waitpid(-1, 0)
    except ChildProcessError:
        pass


def pytest_configure(config):
    config.addinivalue_line("markers",
                            "chatmesh(engineio=None, limits=None, cluster=None): "
                            "cluster.conf overrides for the `node` fixture")
    _raise_nofile()
    _become_subreaper()


def pytest_unconfigure(config):
    _reap_children()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The figures tests recorded with chatmesh_testkit.record_figure, passing or not."""
    if FIGURES:
        terminalreporter.section("measured figures")
        for where, text in FIGURES:
            terminalreporter.write_line(f"{where}: {text}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request) -> bool:
    for when in ("setup", "call"):
        rep = getattr(request.node, "rep_" + when, None)
        if rep is not None and rep.failed:
            return True
    return False


@pytest.fixture
def node_factory(request):
    nodes: list[ChatmeshNode] = []

    def make(engineio=None, limits=None, cluster=None) -> ChatmeshNode:
        n = ChatmeshNode(engineio=engineio, limits=limits, cluster=cluster)
        nodes.append(n)
        n.start()
        return n

    yield make
    failed = _failed(request)
    for n in nodes:
        died = not n.alive()
        rc = n.stop()
        if failed or died:
            sys.stderr.write(f"\n--- chatmesh stderr (port {n.port}, exit {rc}, "
                             f"{'died during test' if died else 'stopped'}) ---\n"
                             f"{n.stderr_text()}\n--- end ---\n")
        if died and not failed:
            pytest.fail(f"chatmesh died during the test (exit {rc})", pytrace=False)


@pytest.fixture
def node(request, node_factory) -> ChatmeshNode:
    m = request.node.get_closest_marker("chatmesh")
    kw = dict(m.kwargs) if m else {}
    return node_factory(**kw)


@pytest.fixture
def clients(node):
    """clients(roomid, transports=None) -> connected RecordingClient; all closed at teardown."""
    made: list[RecordingClient] = []

    def make(roomid="r1", transports=None, connect=True, node_=None, query=None):
        c = RecordingClient(node_ or node, roomid, transports=transports, query=query)
        made.append(c)
        if connect:
            c.connect()
        return c

    yield make
    # disconnect in parallel, never longer than a few seconds in all
    threads = [threading.Thread(target=c.disconnect, daemon=True) for c in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
