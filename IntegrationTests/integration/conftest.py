"""Fixtures for the chatmesh integration tests.

`node` starts a fresh `chatmesh serve` on a free loopback port for each test. Per-test config:

    @pytest.mark.chatmesh(engineio={"ping_interval": 300}, limits={"max_payload": 1000})
    def test_x(node): ...

or `node_factory(engineio=..., limits=...)` for several nodes / configs in one test.
The node is always stopped by pid in teardown (SIGTERM, then SIGKILL after 5 s); when the
test failed, its log is printed (harness.cluster.teardown).
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatmesh_testkit import FIGURES, ChatmeshNode, RecordingClient  # noqa: E402
from harness.clients import close_all  # noqa: E402
from harness.cluster import factory  # noqa: E402
from harness.process import become_subreaper, reap_orphans  # noqa: E402


def _raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def pytest_configure(config):
    config.addinivalue_line("markers",
                            "chatmesh(engineio=None, limits=None, cluster=None): "
                            "cluster.conf overrides for the `node` fixture")
    _raise_nofile()
    become_subreaper()


def pytest_unconfigure(config):
    reap_orphans(spare_managed=False)  # at the end, whatever is left is a leak


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The figures tests recorded with chatmesh_testkit.record_figure, passing or not."""
    if FIGURES:
        terminalreporter.section("measured figures")
        for where, text in FIGURES:
            terminalreporter.write_line(f"{where}: {text}")


@pytest.fixture
def node_factory(request):
    """node_factory(engineio=None, limits=None, cluster=None) -> a started ChatmeshNode."""
    return factory(request, ChatmeshNode)


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
    close_all(made)  # in parallel, never longer than a few seconds in all
