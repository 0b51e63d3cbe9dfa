"""HTTPS and WSS on a node's own `listen` (`[node NAME] tls_cert / tls_key`), for hosts with no
proxy in front, and `chatmesh nginx-conf --tls-cert/--tls-key` in front of a cluster.

python-socketio clients trust the test CA (a requests session whose `verify` is the CA file,
which python-engineio also hands to websocket-client for the WebSocket); /healthz and
/metrics are read over https too (REQUESTS_CA_BUNDLE). Certificates come from a test CA made
with the openssl CLI (client_tls_testkit.TestPKI).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import time
import types

import pytest
import requests

from client_tls_testkit import (ClientTLSCluster, GenCertsPKI, TestPKI,  # noqa: F401
                                TLSRecordingClient, trust_test_ca)
from harness.clients import says, unique_room
from harness.cluster import FAST_LIMITS, teardown
from harness.process import WAIT, chatmesh_binary, close_quietly, wait_until
from mesh_testkit import MeshCluster
from nginx_testkit import NginxFront, nginx_available
from systemd_testkit import cluster_conf, free_ports, node_runner, workdir  # noqa: F401 (fixtures)


@pytest.fixture
def pki(tmp_path) -> TestPKI:
    return TestPKI(tmp_path / "pki")


@pytest.fixture
def tls_cluster(request, pki, monkeypatch):
    """tls_cluster(names=("a1", "a2"), start=True, pki=the pki fixture, **Cluster keywords) ->
    ClientTLSCluster whose nodes serve HTTPS/WSS; stopped by pid at teardown, logs printed on
    failure."""
    td = teardown(request)

    def make(names=("a1", "a2"), start=True, pki=pki, **kw):
        cluster = td.add(ClientTLSCluster(names, pki, **kw))
        trust_test_ca(monkeypatch, pki)
        return cluster.start() if start else cluster
    return make


def _tls_handshake(port: int, ca, alpn=None) -> tuple[bytes, str | None, str]:
    """(the server's certificate as DER, the ALPN protocol chosen, the TLS version) of one
    handshake with 127.0.0.1:port, verifying against `ca`."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return tls.getpeercert(binary_form=True), tls.selected_alpn_protocol(), tls.version()


def _wait_everyone_heard(clients: dict, texts: dict) -> None:
    """Every client (of {username: client}) received every (username, text) of `texts`."""
    want = set(texts.items())
    for name, c in clients.items():
        c.wait_for(lambda evs, c=c: want <= set(says(c)), what=f"{name}: every say {sorted(want)}")


def test_clients_chat_over_https_and_wss_across_two_nodes(tls_cluster, pki):
    c = tls_cluster(limits=FAST_LIMITS)
    a1, a2 = c["a1"], c["a2"]
    # Each node presents its own certificate, chained to the test CA, and speaks HTTP/1.1 only.
    for node in (a1, a2):
        der, alpn, version = _tls_handshake(node.port, pki.ca, alpn=["h2", "http/1.1"])
        cert_pem = pki.issue(node.name)[0].read_text()
        assert der == ssl.PEM_cert_to_DER_cert(cert_pem), f"{node.name} presented another certificate"
        assert alpn == "http/1.1", alpn
        assert version in ("TLSv1.2", "TLSv1.3"), version
    # With only the public CAs (certifi's, as requests ships) a client refuses the node.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(a1.http + "/healthz", timeout=WAIT, verify=requests.certs.where())

    room = unique_room("https")
    t0 = time.monotonic()
    clients = {
        "a1-polling": c.tls_client("a1", room, transports=["polling"]),
        "a1-wss": c.tls_client("a1", room, transports=["websocket"]),
    }
    for name, client in clients.items():
        client.join(name)
    later = {
        "a2-polling": c.tls_client("a2", room, transports=["polling"]),
        "a2-upgrade": c.tls_client("a2", room, transports=None),   # polling, then the upgrade
    }
    for name, client in later.items():
        client.join(name)
    clients.update(later)
    transports = {name: client.transport() for name, client in clients.items()}
    assert transports == {"a1-polling": "polling", "a1-wss": "websocket",
                          "a2-polling": "polling", "a2-upgrade": "websocket"}, transports
    # a2's joins crossed to a1 (so both nodes now know the room is wanted on the other side).
    for name in ("a1-polling", "a1-wss"):
        clients[name].wait_for(lambda evs: all(("message", {"event": "join", "data": {"username": u}})
                                               in evs for u in later), what=f"{name}: a2's joins")

    texts = {name: f"secret hello from {name}" for name in clients}
    for name, client in clients.items():
        client.say(texts[name])
    _wait_everyone_heard(clients, texts)

    health = {n.name: n.healthz() for n in (a1, a2)}
    metrics = {n.name: n.counter("chatmesh_deliveries_total") for n in (a1, a2)}
    print(f"4 clients (polling and WebSocket over TLS) on 2 nodes chatted in "
          f"{time.monotonic() - t0:.2f}s; connections "
          f"{ {k: v['connections'] for k, v in health.items()} }; deliveries {metrics}")
    assert {k: v["connections"] for k, v in health.items()} == {"a1": 2, "a2": 2}
    # One failed handshake, on a1: the client above that did not trust it.
    assert {n.name: n.counter("chatmesh_errors_total", reason="tls_handshake_failed")
            for n in (a1, a2)} == {"a1": 1, "a2": 0}


def _send_and_wait_closed(port: int, data: bytes, timeout: float = WAIT) -> float:
    """Sends `data` to port, then reads until the server closes; returns the seconds that took
    (asserts it closes within `timeout`)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        try:
            while s.recv(65536):
                assert time.monotonic() - t0 < timeout, "the TLS port kept the connection open"
        except ConnectionResetError:
            pass
    return time.monotonic() - t0


def _client_hello(port: int) -> bytes:
    """The first bytes a real TLS client sends (a ClientHello), taken from python's ssl."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_plain_http_garbage_and_stalls_on_the_tls_port_fail_cleanly(tls_cluster):
    c = tls_cluster(names=["a1"], args=["--log-level", "debug"])
    node = c["a1"]
    before = node.counter("chatmesh_errors_total", reason="tls_handshake_failed")
    protocol_errors = {r: node.counter("chatmesh_errors_total", reason=r)
                       for r in ("websocket_protocol", "parse_error")}

    # A stalled handshake: half a ClientHello, then nothing. It must not hold anything up.
    hello = _client_hello(node.port)
    stalled = socket.create_connection(("127.0.0.1", node.port), timeout=WAIT)
    stalled.sendall(hello[: len(hello) // 2])

    # Plain HTTP to the HTTPS port: the client gets an error, not an answer.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(node.plain_http + "/healthz", timeout=WAIT)
    took = {
        "garbage": _send_and_wait_closed(node.port, os.urandom(4096)),
        "huge TLS record": _send_and_wait_closed(node.port, b"\x16\x03\x01\xff\xff" + os.urandom(64)),
    }
    socket.create_connection(("127.0.0.1", node.port), timeout=WAIT).close()   # a port probe
    # Meanwhile the node serves TLS clients as before.
    room = unique_room("after-garbage")
    alice = c.tls_client("a1", room, transports=["websocket"])
    alice.join("alice")
    alice.say("still here")
    alice.wait_for(lambda evs: ("alice", "still here") in says(alice), what="alice's say")
    close_quietly(stalled)

    # plain HTTP, garbage, the huge record, connect-close and the stalled one: 5 failed handshakes.
    deadline = time.monotonic() + WAIT
    while node.counter("chatmesh_errors_total", reason="tls_handshake_failed") - before < 5:
        assert time.monotonic() < deadline, node.metrics().text
        time.sleep(0.05)
    counted = node.counter("chatmesh_errors_total", reason="tls_handshake_failed") - before
    logged = node.log_text(10 ** 7).count("client TLS handshake failed")
    print(f"refused on the TLS port: {counted:.0f} failed handshakes counted, {logged} logged at "
          f"debug; closed after {', '.join(f'{k} {v * 1000:.0f} ms' for k, v in took.items())}")
    assert counted == 5, f"each failed handshake counted once, got {counted}"
    assert logged == 5, node.log_text(5000)
    # The TLS layer's errors end at the TLS layer: none was taken for a protocol error above it.
    assert {r: node.counter("chatmesh_errors_total", reason=r) for r in protocol_errors} == protocol_errors
    node.assert_healthy()


def test_gen_certs_pairs_serve_https_to_clients(tls_cluster, tmp_path):
    """The two commands of an operator without a PKI: `chatmesh gen-certs`, then each node's
    pair as its [node] tls_cert / tls_key. Clients that trust ca.pem reach the node by its
    listen address, which the node certificate names."""
    pki = GenCertsPKI(tmp_path / "certs")
    c = tls_cluster(names=["a1", "a2"], pki=pki)
    check = subprocess.run([str(chatmesh_binary()), "check-config", str(c.conf_path)],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    for node in (c["a1"], c["a2"]):
        der, _, _ = _tls_handshake(node.port, pki.ca)   # verified against ca.pem, by IP SAN
        assert der == ssl.PEM_cert_to_DER_cert(pki.issue(node.name)[0].read_text())
    room = unique_room("gen-certs")
    clients = {"on-a1": c.tls_client("a1", room), "on-a2": c.tls_client("a2", room, transports=["polling"])}
    clients["on-a1"].join("on-a1")
    clients["on-a2"].join("on-a2")
    clients["on-a1"].wait_for(lambda evs: ("message", {"event": "join", "data": {"username": "on-a2"}})
                              in evs, what="on-a2's join across the mesh")
    texts = {name: f"gen-certs pair: {name}" for name in clients}
    for name, client in clients.items():
        client.say(texts[name])
    _wait_everyone_heard(clients, texts)


def _line_of(conf_text: str, prefix: str, after: str) -> int:
    """1-based line number of the first line starting with `prefix` after the line `after`."""
    lines = conf_text.splitlines()
    start = lines.index(after)
    return next(i + 1 for i in range(start, len(lines)) if lines[i].startswith(prefix))


@pytest.mark.parametrize("problem", ["key of another certificate", "missing certificate file"])
def test_unusable_certificate_files_stop_the_node_with_file_and_line(tls_cluster, pki, problem):
    c = tls_cluster(names=["a1"], start=False)
    cert, key = pki.issue("a1")
    text = c.conf_path.read_text()
    if problem == "key of another certificate":
        _, other_key = pki.issue("someone-else")
        text = text.replace(f"tls_key = {key}", f"tls_key = {other_key}")
        bad_path, where = other_key, "tls_key"
    else:
        missing = pki.dir / "no-such-cert.pem"
        text = text.replace(f"tls_cert = {cert}", f"tls_cert = {missing}")
        bad_path, where = missing, "tls_cert"
    c.conf_path.write_text(text)
    node = c["a1"]
    node.spawn()
    rc = node.proc.wait(timeout=20)
    node.expect_exit = True
    out = node.log_text()
    line = _line_of(text, f"{where} =", "[node a1]")
    print(f"{problem}: exit {rc}: {next((ln for ln in out.splitlines() if 'Error:' in ln), out[-300:])}")
    assert rc != 0
    assert f"{c.conf_path}:{line}" in out or f"cluster.conf:{line}" in out, out
    assert str(bad_path) in out, out


def test_socket_activated_node_serves_https_on_the_inherited_socket(node_runner, pki):
    """systemd-socket-activate holds the client socket; the first TLS client's connection
    starts chatmesh, whose TLS then runs on the inherited socket."""
    port, mesh = free_ports(2)
    cert, key = pki.issue("a1")
    conf = cluster_conf({"a1": (port, mesh)}).replace(
        "[node a1]\n", f"[node a1]\ntls_cert = {cert}\ntls_key = {key}\n")
    node = node_runner(conf, listens=[("127.0.0.1", port)], fdnames=["client"])
    node.wait_listening(port)
    base = f"https://127.0.0.1:{port}"
    # This request's connection starts chatmesh; its ClientHello waits in the backlog meanwhile.
    health = requests.get(base + "/healthz", timeout=20, verify=str(pki.ca))
    assert health.status_code == 200 and health.json()["node"] == "a1", health.text
    log = node.log_text()
    assert "inherited=true" in log and "tls=true" in log, log
    der, _, version = _tls_handshake(port, pki.ca)
    assert der == ssl.PEM_cert_to_DER_cert(cert.read_text())

    endpoint = types.SimpleNamespace(http=base)
    room = unique_room("activated-tls")
    clients = {"wss": TLSRecordingClient(endpoint, room, pki.ca, transports=["websocket"]),
               "polling": TLSRecordingClient(endpoint, room, pki.ca, transports=["polling"])}
    try:
        for name, c in clients.items():
            c.connect().join(name)
        texts = {name: f"activated and encrypted: {name}" for name in clients}
        for name, c in clients.items():
            c.say(texts[name])
        _wait_everyone_heard(clients, texts)
    finally:
        for c in clients.values():
            c.close()
    print(f"socket-activated node on :{port} served {version}; chat over wss and https polling")


# --------------------------------------------------------------------------------------------
# nginx in front: `chatmesh nginx-conf --tls-cert/--tls-key`

needs_nginx = pytest.mark.skipif(not nginx_available(), reason="nginx not installed")


def _connected(cluster, client):
    """Connects `client`, which the cluster's teardown then closes."""
    cluster.clients.append(client)
    return client.connect()


@needs_nginx
def test_nginx_https_front_chats_through_to_plain_nodes(request, pki, monkeypatch):
    trust_test_ca(monkeypatch, pki)
    td = teardown(request)
    mesh = td.add(MeshCluster(["a1", "a2"], limits=FAST_LIMITS))
    front = td.add(NginxFront(mesh.conf_path, mesh.dir, tls=pki.issue("front"), balance="ip_hash"))
    text = front.generate()
    cert, key = pki.issue("front")
    assert f"listen 127.0.0.1:{front.port} ssl;" in text, text
    assert f'ssl_certificate "{cert}";' in text and f'ssl_certificate_key "{key}";' in text, text
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text, text
    assert "proxy_pass http://chatmesh;" in text, text
    assert "proxy_set_header Upgrade $http_upgrade;" in text, text
    mesh.start()
    front.start()   # `nginx -t` first, then nginx

    der, _, version = _tls_handshake(front.port, pki.ca)
    assert der == ssl.PEM_cert_to_DER_cert(cert.read_text()), "nginx presents the --tls-cert"
    room = unique_room("nginx-https")
    via_polling = _connected(mesh, TLSRecordingClient(front, room, pki.ca, transports=["polling"]))
    via_upgrade = _connected(mesh, TLSRecordingClient(front, room, pki.ca, transports=None))
    via_polling.join("via-polling")
    via_upgrade.join("via-upgrade")
    front_node = max(((n, mesh[n].healthz()["connections"]) for n in mesh.names), key=lambda kv: kv[1])[0]
    other = next(n for n in mesh.names if n != front_node)
    direct = mesh.client(other, room)
    direct.join("direct")
    for c in (via_polling, via_upgrade):
        c.wait_for(lambda evs: ("message", {"event": "join", "data": {"username": "direct"}}) in evs,
                   what="direct's join across the mesh")
    assert via_upgrade.transport() == "websocket", "the WebSocket upgrade through the HTTPS front"
    clients = {"via-polling": via_polling, "via-upgrade": via_upgrade, "direct": direct}
    texts = {name: f"through nginx over TLS: {name}" for name in clients}
    for name, c in clients.items():
        c.say(texts[name])
    _wait_everyone_heard(clients, texts)

    # nginx logs a WebSocket when it ends.
    via_upgrade.close()
    upgrades = wait_until(lambda: len(re.findall(r'"GET /socket\.io/\?[^"]*transport=websocket[^"]*" 101',
                                                 front.access_log.read_text())),
                          what="the WebSocket's line in nginx's access log")
    print(f"nginx HTTPS front ({version}) :{front.port} -> {front_node}; direct client on {other}; "
          f"{upgrades} WSS upgrade(s) through nginx")
    assert upgrades == 1


@needs_nginx
def test_nginx_https_front_proxies_over_https_to_tls_nodes(request, tls_cluster, pki):
    c = tls_cluster(limits=FAST_LIMITS)
    front = teardown(request).add(NginxFront(c.conf_path, c.dir, tls=pki.issue("front"), balance="ip_hash"))
    text = front.generate()
    assert "proxy_pass https://chatmesh;" in text, text
    front.start()
    room = unique_room("nginx-to-tls")
    via = _connected(c, TLSRecordingClient(front, room, pki.ca, transports=None))
    via.join("via-nginx")
    behind = max(c.names, key=lambda n: c[n].healthz()["connections"])
    other = next(n for n in c.names if n != behind)
    direct = c.tls_client(other, room)
    direct.join("direct")
    via.wait_for(lambda evs: ("message", {"event": "join", "data": {"username": "direct"}}) in evs,
                 what="direct's join across the mesh")
    clients = {"via-nginx": via, "direct": direct}
    texts = {name: f"TLS on both legs: {name}" for name in clients}
    for name, client in clients.items():
        client.say(texts[name])
    _wait_everyone_heard(clients, texts)
    assert via.transport() == "websocket"


def test_nginx_conf_refuses_half_a_tls_pair_and_mixed_schemes(tls_cluster, pki):
    c = tls_cluster(names=["a1", "a2"], start=False)
    cert, key = pki.issue("front")
    half = subprocess.run([str(chatmesh_binary()), "nginx-conf", "--config", str(c.conf_path),
                           "--tls-cert", str(cert)], capture_output=True, text=True, timeout=30)
    assert half.returncode != 0 and "--tls-cert and --tls-key go together" in half.stderr, half.stderr
    # a2 without tls_cert/tls_key: one upstream cannot be both http and https.
    text = c.conf_path.read_text()
    a2_cert, a2_key = pki.issue("a2")
    c.conf_path.write_text(text.replace(f"tls_cert = {a2_cert}\ntls_key = {a2_key}\n", ""))
    mixed = subprocess.run([str(chatmesh_binary()), "nginx-conf", "--config", str(c.conf_path)],
                           capture_output=True, text=True, timeout=30)
    assert mixed.returncode == 2, (mixed.returncode, mixed.stderr)
    assert "one upstream needs one scheme" in mixed.stderr, mixed.stderr
    only_a1 = subprocess.run([str(chatmesh_binary()), "nginx-conf", "--config", str(c.conf_path),
                              "--nodes", "a1"], capture_output=True, text=True, timeout=30)
    assert only_a1.returncode == 0 and "proxy_pass https://chatmesh;" in only_a1.stdout, only_a1.stderr
