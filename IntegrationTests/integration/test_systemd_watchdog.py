"""WATCHDOG=1 tells systemd the node still works, so it must stop when an event loop stalls.

SIGSTOP would prove nothing (it stops every thread, the pinger included). Instead the test
stops ONE event-loop thread with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT: a ptrace-stop of
that thread alone, the rest of the process runs on), as a handler stuck in a blocking call
would. The pings must stop while the loop is stuck, STATUS= lines (sent from another thread)
must go on, showing the process is alive, and the pings must come back once the loop runs.
"""

from __future__ import annotations

import time

import pytest

from systemd_testkit import (ThreadStall, cluster_conf, free_ports, node_runner,  # noqa: F401
                             notify_listener, threads_named, workdir)

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s; systemd would act after 1 s without one
STALL_S = 4.5


def test_a_stalled_event_loop_stops_the_watchdog(node_runner, notify_listener):
    port, = free_ports(1)
    node = node_runner(cluster_conf({"a1": (port, None)}), node="a1", args=["--threads", "2"],
                       env={"NOTIFY_SOCKET": notify_listener.path,
                            "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    notify_listener.wait_for("READY=1", timeout=20)
    notify_listener.wait_for("WATCHDOG=1", count=3)
    loops = threads_named(node.pid, "NIO-ELT-")
    assert len(loops) == 2, f"expected 2 event-loop threads, found {loops}"

    stall = ThreadStall(loops[-1])
    try:
        stall.stall()
    except OSError as e:
        pytest.skip(f"cannot ptrace a thread here: {e}")
    t_stall = time.monotonic()
    try:
        time.sleep(STALL_S)
        t_resume = time.monotonic()
        assert node.alive()
    finally:
        stall.resume()

    # The ping that was due when the loop stopped may still come (its no-op may have run);
    # after one full interval without the loop there must be none.
    quiet_from = t_stall + WATCHDOG_USEC / 1e6
    during = [t for t, _, _ in notify_listener.lines("WATCHDOG=1") if quiet_from < t < t_resume]
    status = [t for t, _, _ in notify_listener.lines("STATUS=") if quiet_from < t < t_resume]
    pings = [round(t - t_stall, 2) for t, _, _ in notify_listener.lines("WATCHDOG=1")]
    print(f"\nWATCHDOG=1 at (s from the stall): {pings}; loop resumed at "
          f"{t_resume - t_stall:.2f}s; STATUS= during the stall: {len(status)}")
    assert during == [], f"WATCHDOG=1 while an event loop was stopped: {pings}"
    assert status, "STATUS= went on meanwhile: the process itself was running"

    so_far = len(notify_listener.lines("WATCHDOG=1"))
    after = notify_listener.wait_for("WATCHDOG=1", count=so_far + 2, timeout=5)
    assert after[-1][0] - t_resume < 3, "pings resume once the loop runs again"
    # no restart or crash meanwhile; the node still answers
    assert node.alive()
    assert len(notify_listener.lines("READY=1")) == 1
