"""Connection-state recovery of the web page's own client (issue 14, docs/RECOVERY.md).

1. Through the generated nginx front, 2-node mesh, `[recovery] enabled = on`: the page's node is
   killed with SIGKILL while bob, on the other node, says a few things. The page reconnects through
   nginx to the survivor with its pid and last offset, comes back recovered ("reconnected, N
   missed messages shown"), shows every missed say exactly once and in order, and sends no second
   join: bob sees neither a quit nor a second join of alice.
2. A transport blip on one node (the page's WebSocket closed under it): with the session still
   held it comes back recovered ("reconnected, nothing missed"); with `max_disconnection` already
   passed it comes back as a new session, joins again and says "rejoined, messages may be missing".

The fronted mesh comes from nginx_testkit (as in test_page_failover.py), Chromium from conftest's
`new_browser`, the page helpers from harness/page.py. With recovery on, every broadcast carries
its offset as a last argument, so bob's recorded messages are (payload, offset) pairs here.
"""
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("selenium")
from selenium.webdriver.common.by import By  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from harness.cluster import teardown  # noqa: E402
from harness.clients import join_msg, quit_msg, say_msg  # noqa: E402
from harness.page import join, join_notices, messages, say, status, wait_for  # noqa: E402
from mesh_testkit import MeshCluster  # noqa: E402
from nginx_testkit import (FAST_LIMITS, nginx_available, start_fronted_mesh,  # noqa: E402
                           which_node)

RECOVERY_ON = {"enabled": "on"}
RECOVERY_LIMIT_S = 15.0
MISSED = 5

# Every Engine.IO packet the page sends from now on (WebSocket messages, long-polling POST
# bodies split at the record separator), in window.__sentFrames.
RECORD_SENT_FRAMES_JS = """
window.__sentFrames = [];
if (!WebSocket.prototype.__recording) {
  var send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data === 'string') { window.__sentFrames.push(data); }
    return send.call(this, data);
  };
  WebSocket.prototype.__recording = true;
  var fetch = window.fetch;
  window.fetch = function (url, init) {
    if (init && init.method === 'POST' && typeof init.body === 'string') {
      Array.prototype.push.apply(window.__sentFrames, init.body.split('\\x1e'));
    }
    return fetch.apply(this, arguments);
  };
}
"""
# The page's transport fails under it, as when the network drops (the page sends no 41).
BREAK_TRANSPORT_JS = """
var transport = window.chatmesh.client.engine.transport;
if (transport.name === 'websocket') { transport.ws.close(); } else { transport.fail('blip'); }
"""


def sent_frames(driver) -> list[str]:
    return driver.execute_script("return window.__sentFrames.slice();")


def notices(driver) -> list[str]:
    return [m["text"] for m in messages(driver) if m["kind"] == "notice"]


def say_texts(driver) -> list[str]:
    return [m["text"] for m in messages(driver) if m["kind"] in ("own", "other")]


def chat(client) -> list[dict]:
    """The `message` payloads a RecordingClient got, without their offset argument."""
    return [a[0] if isinstance(a, tuple) else a for e, a in client.snapshot() if e == "message"]


def connect_frames(frames: list[str]) -> list[dict | None]:
    """The Socket.IO CONNECT packets among Engine.IO frames: their auth payload (None if bare)."""
    return [json.loads(f[2:]) if len(f) > 2 else None for f in frames if f.startswith("40")]


def join_frames(frames: list[str]) -> list[str]:
    return [f for f in frames if f.startswith("42") and '["join"' in f]


def recovery_counts(node) -> dict:
    """The node's chatmesh_recovery_* counters: {name without prefix[/reason]: value}."""
    m = node.metrics()
    return {name[len("chatmesh_recovery_"):] + "".join(f"/{v}" for _, v in sorted(labels)): value
            for (name, labels), value in m.samples.items()
            if name.startswith("chatmesh_recovery_") and name.endswith("_total") and value}


def join_bob(mesh, node: str, room: str):
    bob = mesh.client(node, room)
    bob.emit("join", {"username": "bob"})
    bob.wait_for(lambda evs: join_msg("bob") in chat(bob), what="bob's own join")
    return bob


# The page's SocketClient driven in node, without a browser or a server: what it sends in
# CONNECT, what it reports on the reply, and how it hands events and offsets to the page.
CLIENT_SCRIPT = r"""
const { SocketClient } = require(process.argv[1]);
const out = [];
for (const step of JSON.parse(process.argv[2])) {
  const log = [];
  const sent = [];
  const client = new SocketClient({}, 'websocket', {
    onConnect: (transport, session) => log.push(['connect', session]),
    onEvent: (name, args, offset) => log.push(['event', name, args, offset]),
    onConnectError: () => {}, onDisconnect: () => {}, onFallback: () => {}
  }, step.resume);
  client.engine = { send: (data) => sent.push(data), close: () => {} };
  client.onEngineOpen('websocket');
  step.received.forEach((data) => client.onEngineData(data));
  clearTimeout(client.connectTimer);
  out.push({ sent, log });
}
console.log(JSON.stringify(out));
"""
SAY = {"event": "broadcast_say", "data": {"username": "bob", "text": "x"}}


def run_client(steps: list[dict]) -> list[dict]:
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    script = Path(__file__).resolve().parents[2] / "Sources" / "ChatServer" / "Web" / "chatmesh.js"
    r = subprocess.run([node, "-e", CLIENT_SCRIPT, str(script), json.dumps(steps)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_client_speaks_the_recovery_handshake():
    say = lambda offset: "2" + json.dumps(["message", SAY, offset])  # noqa: E731
    first, recovered, replaced, off = run_client([
        {"resume": None, "received": ['0{"sid":"S1","pid":"P1"}', say("a.1"),
                                      '2["error",{"reason":"r"}]']},
        {"resume": {"sid": "S1", "pid": "P1", "offset": "a.1"},
         "received": [say("a.2"), '0{"sid":"S1","pid":"P1"}', say("a.3")]},
        {"resume": {"sid": "S1", "pid": "P1", "offset": None}, "received": ['0{"sid":"S2","pid":"P2"}']},
        {"resume": None, "received": ['0{"sid":"S3"}', say("not an offset")]},
    ])
    assert first == {"sent": ["0"], "log": [
        ["connect", {"sid": "S1", "pid": "P1", "recovered": False, "early": 0}],
        ["event", "message", [SAY], "a.1"],
        ["event", "error", [{"reason": "r"}], None]]}
    # The missed event before the reply is held back and handed over after it.
    assert recovered == {"sent": ['0{"pid":"P1","offset":"a.1"}'], "log": [
        ["connect", {"sid": "S1", "pid": "P1", "recovered": True, "early": 1}],
        ["event", "message", [SAY], "a.2"],
        ["event", "message", [SAY], "a.3"]]}
    assert replaced == {"sent": ['0{"pid":"P1"}'], "log": [
        ["connect", {"sid": "S2", "pid": "P2", "recovered": False, "early": 0}]]}
    # Recovery off (no pid in the reply): a string last argument is content, as before.
    assert off == {"sent": ["0"], "log": [
        ["connect", {"sid": "S3", "pid": None, "recovered": False, "early": 0}],
        ["event", "message", [SAY, "not an offset"], None]]}


@pytest.fixture
def recovery_front(request, new_browser):
    """(mesh b1+b2 with recovery on, nginx in front), as test_page_failover's fronted_mesh."""
    if not nginx_available():
        pytest.skip("nginx not installed")
    return start_fronted_mesh(teardown(request), ["b1", "b2"], limits=FAST_LIMITS,
                              recovery=RECOVERY_ON, balance="ip_hash")


def test_page_recovers_missed_says_after_its_node_is_killed(new_browser, recovery_front):
    mesh, front = recovery_front
    room = f"recovery-{uuid.uuid4().hex[:8]}"
    alice = new_browser("alice")
    join(alice, front.http, room, "alice")
    victim = next(n for n, k in which_node(mesh, 1).items() if k == 1)
    survivor = next(n for n in mesh.names if n != victim)
    bob = join_bob(mesh, survivor, room)
    wait_for(alice, lambda d: "bob joined" in notices(d), "bob's join on the page")
    bob.say("before the kill")
    wait_for(alice, lambda d: "before the kill" in say_texts(d), "bob's say before the kill")
    alice.execute_script(RECORD_SENT_FRAMES_JS)

    t_kill = time.monotonic()
    mesh[victim].kill9()
    missed = [f"missed-{i}" for i in range(MISSED)]
    for text in missed:
        bob.say(text)
    bob.wait_for(lambda evs: all(say_msg("bob", t) in chat(bob) for t in missed),
                 what="bob's missed says echoed")
    t_said = time.monotonic()
    wait_for(alice, lambda d: any(n.startswith("reconnected") for n in notices(d)),
             "the 'reconnected' notice", timeout=RECOVERY_LIMIT_S + 5)
    t_recovered = time.monotonic()
    wait_for(alice, lambda d: set(missed) <= set(say_texts(d)), "every missed say")
    wait_for(alice, lambda d: d.find_element(By.ID, "send").is_enabled(), "send enabled")

    # The recovered session is in the room under its name: both directions still work.
    bob.say("after the recovery")
    wait_for(alice, lambda d: "after the recovery" in say_texts(d), "a live say after recovery")
    say(alice, "alice is back")
    bob.wait_for(lambda evs: say_msg("alice", "alice is back") in chat(bob), what="alice's say")

    frames = sent_frames(alice)
    shown = notices(alice)
    counts = recovery_counts(mesh[survivor])
    print(f"page via nginx :{front.port} on {victim}, killed; bob on {survivor} said {MISSED} "
          f"in {t_said - t_kill:.2f} s; page recovered after {t_recovered - t_kill:.2f} s "
          f"({status(alice)}); connections {which_node(mesh, 2)}; CONNECTs sent "
          f"{connect_frames(frames)}; notices {shown}; {survivor} counted {counts}")
    assert counts.get("succeeded_total") == 1, counts
    # Recovered, with every missed say once, in bob's order, and nothing else in between.
    assert f"reconnected, {MISSED} missed messages shown" in shown
    assert say_texts(alice) == ["before the kill", *missed, "after the recovery", "alice is back"]
    assert [m["kind"] for m in messages(alice) if m["text"] == "alice is back"] == ["own"]
    # It asked for its session with a pid and an offset, and never joined again.
    claims = connect_frames(frames)
    assert claims and all(c and set(c) == {"pid", "offset"} for c in claims), claims
    assert join_frames(frames) == []
    assert join_notices(alice, "alice") == 1
    bob_saw = chat(bob)
    assert join_msg("alice") not in bob_saw and quit_msg("alice") not in bob_saw, bob_saw
    assert status(alice).startswith("connected (")


@pytest.fixture
def recovery_node(request, new_browser):
    """recovery_node(max_disconnection_ms) -> a started one-node mesh (c1) with recovery on;
    stopped before the browsers' cleanup."""
    td = teardown(request)

    def start(max_disconnection_ms: int) -> MeshCluster:
        recovery = dict(RECOVERY_ON, max_disconnection=max_disconnection_ms)
        return td.add(MeshCluster(["c1"], limits=FAST_LIMITS, recovery=recovery)).start()

    return start


@pytest.mark.parametrize("transport, max_disconnection_ms, recovered",
                         [("websocket", 120000, True), ("websocket", 200, False),
                          ("polling", 120000, True)],
                         ids=["held", "expired", "polling"])
def test_page_after_a_transport_blip(new_browser, recovery_node, transport, max_disconnection_ms,
                                     recovered):
    """The page's transport fails under it (no 41). It reconnects no sooner than 500 ms later:
    with max_disconnection 200 ms its session has expired by then and the server answers a new
    one. Over long-polling the page's CONNECT goes in a POST body, the same exchange."""
    mesh = recovery_node(max_disconnection_ms)
    room = f"blip-{uuid.uuid4().hex[:8]}"
    alice = new_browser("alice")
    join(alice, mesh["c1"], room, "alice", query=f"transport={transport}",
         expect_transport=transport)
    bob = join_bob(mesh, "c1", room)
    wait_for(alice, lambda d: "bob joined" in notices(d), "bob's join on the page")
    alice.execute_script(RECORD_SENT_FRAMES_JS)

    t_blip = time.monotonic()
    alice.execute_script(BREAK_TRANSPORT_JS)
    expected = "reconnected, nothing missed" if recovered else "rejoined, messages may be missing"
    wait_for(alice, lambda d: expected in notices(d), f"the notice {expected!r}")
    t_back = time.monotonic()
    wait_for(alice, lambda d: d.find_element(By.ID, "send").is_enabled(), "send enabled")
    bob.say("after the blip")
    wait_for(alice, lambda d: "after the blip" in say_texts(d), "a live say after the blip")

    frames = sent_frames(alice)
    counts = recovery_counts(mesh["c1"])
    print(f"{transport}, max_disconnection {max_disconnection_ms} ms: back after "
          f"{t_back - t_blip:.2f} s; CONNECTs sent {connect_frames(frames)}; notices "
          f"{notices(alice)}; counted {counts}")
    assert counts.get("attempts_total") == 1, counts
    assert counts.get("succeeded_total", 0) == (1 if recovered else 0), counts
    claims = connect_frames(frames)
    assert len(claims) == 1 and set(claims[0]) == {"pid", "offset"}, claims
    bob_saw = chat(bob)
    if recovered:
        assert join_frames(frames) == []
        assert join_notices(alice, "alice") == 1
        assert join_msg("alice") not in bob_saw and quit_msg("alice") not in bob_saw, bob_saw
    else:
        assert len(join_frames(frames)) == 1
        wait_for(alice, lambda d: join_notices(d, "alice") == 2, "alice's second join notice")
        # The room sees the expired session quit, then the new one join.
        bob.wait_for(lambda evs: join_msg("alice") in chat(bob), what="alice's join again")
        bob_saw = chat(bob)
        assert quit_msg("alice") in bob_saw, bob_saw
        assert bob_saw.index(quit_msg("alice")) < bob_saw.index(join_msg("alice")), bob_saw
