"""Connection-level defences of the client port: idle and slowloris connections up to and past
the node's descriptor limit are cut within `header_timeout` of their accept (or sooner, to make
room at the socket cap), while new Socket.IO clients still connect and chat, `/healthz` answers
every poll, and /metrics counts every cut by reason.

The node accepts in the order connections arrived, so everything that connects during a flood
(an attacker, a newcomer, a /healthz poll) first waits its turn in the kernel's accept queue,
longer on a sanitizer build or a loaded machine. The test measures that wait from the node's
own /metrics (attackers accepted so far) and judges each time against it, rather than
guessing a slack wide enough for every machine.

The attackers run in helper processes (this file run as a script), so the test process keeps
its own descriptors; the scaled test lowers the node's RLIMIT_NOFILE with `prlimit` so the
limit is reached in a second, and the full-scale one (CHATMESH_FULL_SCALE=1) uses the node's
own 20,000.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time

if __name__ != "__main__":
    import pytest
    import requests

    from chatmesh_testkit import WAIT, RecordingClient, record_figure, say_msg, unique_room
    from harness.clients import close_all
    from harness.node import Metrics
    from harness.process import MANAGED_PIDS, stop_process


# --------------------------------------------------------------------------------------------
# The attacker: `python test_connection_defences.py HOST PORT COUNT MODE HOLD_S`


def attack(host: str, port: int, count: int, mode: str, hold_s: float) -> dict:
    """Opens `count` connections that never complete a request head: `idle` ones send nothing,
    `slowloris` ones send a request line and then one header line a second. Records how long
    each lived (from its connect to the node's close) and, for slowloris, how many header lines
    it sent; gives up on the ones still open after `hold_s`. `spans` are each socket's connect
    and close on the system-wide monotonic clock (`time.monotonic()` is CLOCK_MONOTONIC), so the
    test process can set them against what the node's /metrics said when."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    opened_at: dict[socket.socket, float] = {}
    lines_sent: dict[socket.socket, int] = {}
    lifetimes: list[float] = []
    spans: list[tuple[float, float]] = []
    lines_at_close: list[int] = []
    failed, first_error = 0, None

    def closed(s: socket.socket, now: float) -> None:
        start = opened_at.pop(s)
        lifetimes.append(round(now - start, 3))
        spans.append((round(start, 4), round(now, 4)))
        lines_at_close.append(lines_sent.pop(s, 0))
        sel.unregister(s)
        s.close()

    def service(timeout: float) -> None:
        for key, _ in sel.select(timeout):
            s = key.fileobj
            try:
                if s.recv(4096):
                    continue  # a response (none expected); the close follows
            except OSError:
                pass
            closed(s, time.monotonic())

    def trickle(now: float) -> None:
        for s in [s for s in lines_sent if s in opened_at]:
            try:
                s.send(b"X-Slow: %d\r\n" % lines_sent[s])
                lines_sent[s] += 1
            except OSError:
                closed(s, now)

    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect((host, port))
        except OSError as e:
            failed += 1
            first_error = first_error or repr(e)
            s.close()
            continue
        s.setblocking(False)
        opened_at[s] = time.monotonic()
        sel.register(s, selectors.EVENT_READ)
        if mode == "slowloris":
            try:
                s.send(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n")
                lines_sent[s] = 0
            except OSError:
                closed(s, time.monotonic())
        if i % 64 == 0:
            service(0)
    print(json.dumps({"event": "opened", "opened": count - failed}), flush=True)
    deadline = time.monotonic() + hold_s
    next_line = time.monotonic() + 1.0
    while opened_at and time.monotonic() < deadline:
        service(0.05)
        now = time.monotonic()
        if mode == "slowloris" and now >= next_line:
            trickle(now)
            next_line = now + 1.0
    return {"event": "done", "mode": mode, "opened": count - failed, "failed_connect": failed,
            "first_error": first_error, "still_open": len(opened_at), "lifetimes": lifetimes,
            "lines_at_close": lines_at_close, "spans": spans}


if __name__ == "__main__":
    host_, port_, count_, mode_, hold_ = sys.argv[1:6]
    print(json.dumps(attack(host_, int(port_), int(count_), mode_, float(hold_))), flush=True)
    sys.exit(0)


# --------------------------------------------------------------------------------------------
# The test side


class Attacker:
    """One helper process running `attack`."""

    def __init__(self, node, count: int, mode: str, hold_s: float):
        self.mode = mode
        self.proc = subprocess.Popen(
            [sys.executable, __file__, node.host, str(node.port), str(count), mode, str(hold_s)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        MANAGED_PIDS.add(self.proc.pid)
        self.opened: int | None = None

    def wait_opened(self, timeout: float) -> int:
        line = self._line(timeout)
        assert line.get("event") == "opened", line
        self.opened = line["opened"]
        return self.opened

    def result(self, timeout: float) -> dict:
        return self._line(timeout)

    def _line(self, timeout: float) -> dict:
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        assert got and got[0], (f"attacker ({self.mode}) said nothing within {timeout}s; "
                                f"stderr: {self.stop()}")
        return json.loads(got[0])

    def stop(self) -> str:
        stop_process(self.proc, timeout=2)
        MANAGED_PIDS.discard(self.proc.pid)
        return self.proc.stderr.read()[-2000:] if self.proc.stderr else ""


class Poller(threading.Thread):
    """Calls `probe()` every `interval` s until stopped; keeps what it returned or raised."""

    def __init__(self, probe, interval: float):
        super().__init__(daemon=True)
        self.probe, self.interval = probe, interval
        self.results: list = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            t = time.monotonic()
            try:
                self.results.append(self.probe())
            except Exception as e:  # noqa: BLE001 - a failed poll is the finding
                self.results.append(e)
            self.halt.wait(max(0.0, self.interval - (time.monotonic() - t)))

    def stop(self) -> list:
        self.halt.set()
        self.join(10)
        return self.results


class NodeView:
    """The node's own account of the attack, read from /metrics over one keep-alive connection
    (a new connection per poll would wait in the accept queue behind the attackers). Each
    sample is (sent, received, open client sockets, attackers accepted so far, descriptors the
    process holds, from /proc). An attacker the node has accepted is either still unfinished
    (it never completes a request head) or has been cut, so `unfinished + cut{header_timeout} +
    cut{socket_cap}` counts them (give or take a /healthz poll between its accept and its head)."""

    def __init__(self, node):
        self.url = node.http + "/metrics"
        self.session = requests.Session()
        self.fd_dir = f"/proc/{node.pid}/fd"

    def sample(self) -> tuple[float, float, float, float, int]:
        sent = time.monotonic()
        r = self.session.get(self.url, timeout=WAIT)
        received = time.monotonic()
        assert r.status_code == 200, r.status_code
        m = Metrics.parse(r.text)
        accepted = sum(m.get(name, **labels) or 0.0 for name, labels in (
            ("chatmesh_client_sockets_unfinished", {}),
            ("chatmesh_connections_cut_total", {"reason": "header_timeout"}),
            ("chatmesh_connections_cut_total", {"reason": "socket_cap"})))
        return sent, received, m.get("chatmesh_client_sockets"), accepted, len(os.listdir(self.fd_dir))


def accepted_by(samples: list, spans: list) -> list[float]:
    """For each attacker socket (`spans`, in connect order), the time by which the node had
    accepted it: the node accepts in the order connections completed, so the k-th to connect
    was accepted by the first sample that counts k accepted. An upper bound (late by at most
    one poll), so a lifetime measured from it errs in the node's favour by that much and no
    more; the node cannot cut a connection before it has accepted it."""
    out, i = [], 0
    for k, (connected, _) in enumerate(spans, start=1):
        while i < len(samples) - 1 and samples[i][3] < k:
            i += 1
        out.append(max(connected, samples[i][1]))
    return out


def accepted_within(samples: list, window_s: float) -> tuple[float, float]:
    """The most attackers the node accepted inside any `window_s` (counted between the sending
    of one sample and the receipt of a later one), and over how long: all of them were open
    at once at the end of that span unless the socket cap cut some, since none had waited a
    whole header_timeout yet."""
    best, span, j = 0.0, window_s, 0
    for i in range(len(samples)):
        j = max(j, i)
        while j + 1 < len(samples) and samples[j + 1][1] - samples[i][0] <= window_s:
            j += 1
        if samples[j][3] - samples[i][3] > best:
            best, span = samples[j][3] - samples[i][3], max(0.1, samples[j][1] - samples[i][0])
    return best, span


def chat_round(node, listener, room: str, i: int, keep: list, connect_timeout: float = WAIT) -> float:
    """A new client connects (WebSocket or long-polling, in turn), joins and says; the listener
    hears it. Returns how long that took. The client stays connected (in `keep`, closed at the
    end all at once: python-engineio's polling disconnect can wait a ping interval).

    Its first connection waits in the kernel's accept queue behind whatever arrived before
    it, as any client's would: `connect_timeout` lets it wait that out, and the caller judges
    the time taken against the accept lag it measured."""
    t = time.monotonic()
    c = RecordingClient(node, room, transports=["websocket"] if i % 2 else ["polling"])
    keep.append(c)
    c.sio.eio.request_timeout = connect_timeout
    c.sio.connect(c.url(), transports=c.transports, wait_timeout=connect_timeout)
    c.join(f"newcomer{i}")
    text = f"made it through {i}"
    c.say(text)
    want = ("message", say_msg(f"newcomer{i}", text))
    listener.wait_for(lambda evs: want in evs, what=repr(want), timeout=WAIT)
    return time.monotonic() - t


def run_attack(node, idle: int, slowloris: int, processes_per_mode: int, header_timeout_s: float,
               slack_s: float, cap: int, label: str) -> dict:
    room = unique_room("defended")
    listener = RecordingClient(node, room, transports=["websocket"]).connect()
    listener.join("listener")
    before = node.metrics()
    assert before.get("chatmesh_connections_cut_total", reason="header_timeout") == 0, before.text
    assert before.get("chatmesh_connections_cut_total", reason="socket_cap") == 0, before.text

    def healthz():
        # A new connection each time, which waits in the accept queue like any client's: it
        # may wait out the accept lag, judged below.
        t = time.monotonic()
        r = requests.get(node.http + "/healthz", timeout=hold)
        return t, time.monotonic() - t, r.status_code

    health = Poller(healthz, 0.1)
    view = NodeView(node)
    # Descriptors the node holds besides client sockets (listeners, event loops, logs, links):
    # what a peak of descriptors is judged against.
    _, _, clients_before, _, fds_before = view.sample()
    other_descriptors = fds_before - int(clients_before)
    peak = Poller(view.sample, 0.1)
    chats: list = []
    newcomers: list = []
    chat_stop = threading.Event()

    def chat_loop():
        i = 0
        while not chat_stop.is_set():
            t = time.monotonic()
            try:
                chats.append((t, chat_round(node, listener, room, i, newcomers, connect_timeout=hold)))
            except Exception as e:  # noqa: BLE001 - a failed round is the finding
                chats.append(e)
            i += 1

    chatter = threading.Thread(target=chat_loop, daemon=True)
    hold = header_timeout_s + slack_s + 30
    attackers = []
    try:
        health.start()
        peak.start()
        chatter.start()
        t0 = time.monotonic()
        for mode, total in (("idle", idle), ("slowloris", slowloris)):
            for k in range(processes_per_mode):
                n = total // processes_per_mode + (1 if k < total % processes_per_mode else 0)
                if n:
                    attackers.append(Attacker(node, n, mode, hold))
        opened = sum(a.wait_opened(120) for a in attackers)
        t_opened = time.monotonic() - t0
        results = [a.result(hold + 30) for a in attackers]
        t_done = time.monotonic() - t0
        # A few more rounds after the attack: the node is itself again.
        time.sleep(0.5)
    finally:
        chat_stop.set()
        chatter.join(30)
        health_results = health.stop()
        peaks = peak.stop()
        for a in attackers:
            a.stop()
    after_round = chat_round(node, listener, room, 10**6, newcomers)
    close_all([listener, *newcomers])

    lifetimes = [x for r in results for x in r["lifetimes"]]
    spans = sorted(tuple(x) for r in results for x in r["spans"])
    slow_lines = [n for r in results if r["mode"] == "slowloris" for n in r["lines_at_close"]]
    failed_connects = sum(r["failed_connect"] for r in results)
    m = node.metrics()
    cut_timeout = m.get("chatmesh_connections_cut_total", reason="header_timeout")
    cut_cap = m.get("chatmesh_connections_cut_total", reason="socket_cap")
    view.session.close()
    samples = [p for p in peaks if isinstance(p, tuple)]
    final = time.monotonic()
    samples.append((final, final, m.get("chatmesh_client_sockets"), cut_timeout + cut_cap, 0))
    peak_sockets = max((p[2] for p in samples), default=0)
    peak_descriptors = max((p[4] for p in samples), default=0)
    accepts = accepted_by(samples, spans)
    node_lifetimes = [close - accepted for (_, close), accepted in zip(spans, accepts)]
    longest = max(range(len(spans)), key=node_lifetimes.__getitem__)
    accept_lag = max(accepted - connected for (connected, _), accepted in zip(spans, accepts))
    held, held_span = accepted_within(samples, header_timeout_s - 0.25)
    poll_gap = max((b[1] - a[1] for a, b in zip(samples, samples[1:-1])), default=0)
    chat_failures = [c for c in chats if isinstance(c, Exception)]
    chat_times = sorted(c[1] for c in chats if not isinstance(c, Exception))

    def lag_during(t0: float, t1: float) -> float:
        """The longest a connection made between `t0` and `t1` waited to be accepted, going by
        the attackers that connected just before `t0` and in between."""
        before = [k for k, (connected, _) in enumerate(spans) if connected <= t0][-1:]
        during = [k for k, (connected, _) in enumerate(spans) if t0 < connected <= t1]
        return max((max(0.0, accepts[k] - max(t0, spans[k][0])) for k in before + during), default=0.0)

    # A newcomer is slowed by the accept queue and by nothing else.
    late_chats = [(round(took, 2), round(lag_during(t, t + took), 2)) for t, took in
                  (c for c in chats if not isinstance(c, Exception))
                  if took > lag_during(t, t + took) + WAIT]
    bad_health = [h for h in health_results if not isinstance(h, tuple) or h[2] != 200]
    late_health = [(round(took, 2), round(lag_during(t, t + took), 2)) for t, took, _ in
                   (h for h in health_results if h not in bad_health)
                   if took > lag_during(t, t + took) + WAIT]
    record_figure(label, (
        f"{opened} attacker sockets ({idle} idle, {slowloris} slowloris; {failed_connects} connects "
        f"failed) opened in {t_opened:.1f}s, all closed by the node after {t_done:.1f}s; "
        f"accept lag max {accept_lag:.2f}s, {held:.0f} accepted within one header_timeout; "
        f"lifetime max {max(lifetimes):.2f}s from connect, {max(node_lifetimes):.2f}s from accept "
        f"(header_timeout {header_timeout_s}s; /metrics every {poll_gap:.2f}s at worst); cut: "
        f"header_timeout {cut_timeout:.0f}, socket_cap {cut_cap:.0f}; client sockets peak "
        f"{peak_sockets:.0f} (cap {cap}), descriptors peak {peak_descriptors}; "
        f"{len(chat_times)} newcomers chatted meanwhile "
        f"(slowest {chat_times[-1] if chat_times else 0:.2f}s; {len(late_chats)} slower than the accept "
        f"lag + {WAIT}s), {len(chat_failures)} failed; "
        f"/healthz {len(health_results)} polls, {len(bad_health)} failed"
        + (f" (first: {bad_health[0]!r})" if bad_health else "") + f", {len(late_health)} late"))

    assert all(r["still_open"] == 0 for r in results), \
        f"attacker sockets still open after {hold}s: {[r['still_open'] for r in results]}"
    # The header timer runs from the node's accept: a busy node (a sanitizer build, a loaded
    # machine) accepts late, but once it has, the connection is cut within header_timeout.
    connected, closed = spans[longest]
    assert node_lifetimes[longest] <= header_timeout_s + slack_s, (
        f"an attacker lived {node_lifetimes[longest]:.2f}s after the node accepted it (connected "
        f"{connected:.2f}, accepted by {accepts[longest]:.2f}, closed {closed:.2f}); "
        f"header_timeout is {header_timeout_s}s")
    if slowloris:
        # Trickled header lines did not buy time: sockets that sent some were cut all the same.
        assert max(slow_lines) >= 1, slow_lines[:50]
    assert not chat_failures, f"{len(chat_failures)} newcomers failed: {chat_failures[:3]}"
    assert not late_chats, f"newcomers slower than the accept queue + {WAIT}s: (took, lag) {late_chats[:5]}"
    assert len(chat_times) >= 3, chat_times
    assert not bad_health, f"/healthz failed {len(bad_health)} of {len(health_results)} times: " \
                           f"{bad_health[:3]}"
    assert not late_health, f"/healthz slower than the accept queue + {WAIT}s: (took, lag) {late_health[:5]}"
    assert len(health_results) >= 10, health_results
    # Every attacker was cut by the node, and nobody else: the counters add up exactly.
    assert cut_timeout + cut_cap == opened, (cut_timeout, cut_cap, opened, m.text)
    assert cut_timeout > 0, m.text
    assert after_round < WAIT
    return {"opened": opened, "cut_cap": cut_cap, "peak": peak_sockets, "descriptors": peak_descriptors,
            "other_descriptors": other_descriptors,
            "accepted_within_timeout": held, "accept_rate": held / held_span}


def start_node(node_factory, limits: dict, nofile: int | None):
    n = node_factory(limits=limits, start=False)
    if nofile:
        n.command_prefix = ["prlimit", f"--nofile={nofile}:{nofile}", "--"]
    n.start()
    return n


def test_idle_and_slowloris_past_the_descriptor_limit_are_cut_while_clients_chat(node_factory):
    """2,600 attacker sockets against a node with 2,048 descriptors (cap 1,792 with the default
    reserve of 256): half idle, half trickling a header line a second. Each is cut within
    header_timeout (4 s) of the node's accept, plus a little slack for the timer's loop turn and
    the attacker noticing; the wait in the accept queue before it is measured, not guessed.

    The cap is reached only if the node accepts more than 1,792 connections within one
    header_timeout, which a sanitizer build on a loaded machine may not: then the node's
    measured accept rate sets the header_timeout of a second attack, on a fresh node, under
    which it must."""
    cap = 2048 - 256
    header_timeout_s = 4.0
    for attempt in (1, 2):
        node = start_node(node_factory, {"header_timeout": int(header_timeout_s * 1000)}, nofile=2048)
        out = run_attack(node, idle=1300, slowloris=1300, processes_per_mode=1,
                         header_timeout_s=header_timeout_s, slack_s=2.0, cap=cap,
                         label=f"connection defences, 2,048 descriptors (attack {attempt})")
        assert out["opened"] > 2048
        node.assert_healthy()
        # The premise of the cap checks below: more connections accepted within one
        # header_timeout than the cap holds, by enough that the cap was held for a while.
        if out["accepted_within_timeout"] >= cap + 200:
            break
        assert attempt == 1, f"the cap was not reached even with header_timeout {header_timeout_s}s: {out}"
        needed = 1.5 * (cap + 200) / out["accept_rate"]
        assert needed <= 40, (f"the node accepts {out['accept_rate']:.0f} connections/s; reaching "
                              f"its cap would take a header_timeout of {needed:.0f}s: {out}")
        header_timeout_s = float(int(needed) + 1)
    # The cap was reached and held: room was made, and the node went past it only by the
    # sockets it had accepted and not yet admitted on their own loop, whose room the accepting
    # loop makes as it admits its own (measured: 1 or 2 over, where before the fix it was up to
    # ~130 sockets and ~240 descriptors). The product's bound is one accept batch
    # (`ConnectionGate.acceptBatch`, 64), on the gauge and on the real descriptors (/proc, less
    # those the node held besides client sockets before the attack), which sampling every
    # 0.1 s over a keep-alive connection sees whole. The process never ran out of descriptors.
    accept_batch = 64
    assert out["cut_cap"] > 0
    assert cap - 50 <= out["peak"] <= cap + accept_batch, out
    assert out["descriptors"] - out["other_descriptors"] <= cap + accept_batch, out
    assert out["descriptors"] < 2048, out
    assert "client socket cap reached" in node.log_text(200000)


FULL_SCALE = os.environ.get("CHATMESH_FULL_SCALE") == "1"


@pytest.mark.skipif(not FULL_SCALE, reason="full scale (19,990 sockets, ~60 s): CHATMESH_FULL_SCALE=1")
@pytest.mark.parametrize("header_timeout_ms", [10000, 30000])
def test_full_scale_19990_idle_sockets_against_20000_descriptors(node_factory, header_timeout_ms):
    """The issue's numbers: the node at its own 20,000-descriptor limit, 19,990 idle sockets
    from two processes. With the default header_timeout (10 s) a debug build accepts them more
    slowly than they expire; with 30 s they all coexist and the socket cap is reached."""
    node = start_node(node_factory, {"header_timeout": header_timeout_ms}, nofile=None)
    soft = int(open(f"/proc/{node.pid}/limits").read().split("Max open files")[1].split()[0])
    cap = soft - 256
    out = run_attack(node, idle=19990, slowloris=0, processes_per_mode=2,
                     header_timeout_s=header_timeout_ms / 1000, slack_s=10.0, cap=cap,
                     label=f"connection defences, full scale ({soft} descriptors, "
                           f"header_timeout {header_timeout_ms} ms)")
    assert out["opened"] >= 19990 - 10
    if out["peak"] >= cap - 50:
        assert out["cut_cap"] > 0 and out["peak"] <= cap + 64, out
    node.assert_healthy()


def test_header_timeout_covers_the_tls_handshake_on_an_https_node(request, tmp_path, monkeypatch):
    """On a node serving HTTPS the timer runs from the accept, through the TLS handshake: a
    stalled handshake (half a ClientHello) and a silent TCP connection are both cut at
    header_timeout, while a TLS client connects and chats."""
    import ssl

    from client_tls_testkit import ClientTLSCluster, TestPKI, trust_test_ca
    from harness.cluster import teardown

    pki = TestPKI(tmp_path / "pki")
    cluster = teardown(request).add(ClientTLSCluster(["a1"], pki, limits={"header_timeout": 2000}))
    trust_test_ca(monkeypatch, pki)
    cluster.start()
    node = cluster["a1"]

    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1").do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    stalled = socket.create_connection((node.host, node.port), timeout=WAIT)
    stalled.sendall(hello[: len(hello) // 2])
    silent = socket.create_connection((node.host, node.port), timeout=WAIT)
    t0 = time.monotonic()

    room = unique_room("tls-defended")
    alice = cluster.tls_client("a1", room, transports=["websocket"])
    alice.join("alice")
    alice.say("over tls")
    alice.wait_for(lambda evs: ("message", say_msg("alice", "over tls")) in evs, what="alice's say")

    took = {}
    for name, s in (("stalled handshake", stalled), ("silent", silent)):
        s.settimeout(10)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        took[name] = time.monotonic() - t0
        s.close()
    record_figure("connection defences, HTTPS node", ", ".join(
        f"{k} cut after {v:.2f}s" for k, v in took.items()) + " (header_timeout 2 s)")
    assert all(1.9 <= v <= 5.0 for v in took.values()), took
    assert node.counter("chatmesh_connections_cut_total", reason="header_timeout") == 2
    assert alice.sio.connected
    node.assert_healthy()
