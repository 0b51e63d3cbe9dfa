"""The chat page over https:// on nodes that serve HTTPS and WSS themselves
(`[node NAME] tls_cert / tls_key`): two Chromium tabs on different nodes of a 2-node mesh,
one on WSS (the page's default) and one forced to long-polling over https, chat with each
other.

The certificates come from a test CA (IntegrationTests/integration/client_tls_testkit.py);
Chromium is told to accept them (DevTools Security.setIgnoreCertificateErrors, what
--ignore-certificate-errors does), python's requests trust the CA (REQUESTS_CA_BUNDLE).
"""
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("selenium")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from client_tls_testkit import ClientTLSCluster, TestPKI, trust_test_ca  # noqa: E402
from harness.cluster import teardown  # noqa: E402
from harness.page import join, say_both_ways, wait_message  # noqa: E402


@pytest.fixture
def tls_mesh2(request, new_browser, tmp_path, monkeypatch):
    """A 2-node mesh (t1, t2) serving HTTPS. Depends on new_browser so it is stopped before the
    browsers' cleanup runs; every node is stopped by pid, also on failure (logs printed then)."""
    pki = TestPKI(tmp_path / "pki")
    trust_test_ca(monkeypatch, pki)
    return teardown(request).add(ClientTLSCluster(["t1", "t2"], pki)).start()


def https_browser(new_browser, name):
    driver = new_browser(name)
    driver.execute_cdp_cmd("Security.setIgnoreCertificateErrors", {"ignore": True})
    return driver


def page_protocol(driver) -> str:
    return driver.execute_script("return location.protocol")


def test_two_tabs_chat_over_https_with_wss_and_polling(new_browser, tls_mesh2):
    t1, t2 = tls_mesh2["t1"], tls_mesh2["t2"]
    assert t1.base_url.startswith("https://") and t2.base_url.startswith("https://")
    room = f"tls-{uuid.uuid4().hex[:8]}"
    alice, bob = https_browser(new_browser, "alice"), https_browser(new_browser, "bob")
    t0 = time.monotonic()
    join(alice, t1, room, "alice", expect_transport="websocket")
    time.sleep(0.3)  # t1's SUB for the room reaches t2
    join(bob, t2, room, "bob", query="transport=polling", expect_transport="polling")
    assert page_protocol(alice) == "https:" and page_protocol(bob) == "https:"
    wait_message(alice, "notice", "bob", "bob joined")   # a join crossing t2 -> t1

    say_both_ways(alice, bob, "hello over wss", "hi over https polling")
    # Nothing the page asked for was blocked (mixed content, CSP): no severe console entry.
    severe = [e["message"] for d in (alice, bob) for e in d.get_log("browser")
              if e.get("level") == "SEVERE" and "favicon" not in e["message"]]
    conns = {n.name: n.healthz()["connections"] for n in (t1, t2)}
    # Chromium first refuses the test CA's certificate (an alert, counted by the node as a
    # failed handshake), then connects again with the override.
    refused = {n.name: n.counter("chatmesh_errors_total", reason="tls_handshake_failed") for n in (t1, t2)}
    print(f"alice (wss) on t1 :{t1.port}, bob (https polling) on t2 :{t2.port}; "
          f"connections {conns}; handshakes Chromium refused before its override {refused}; "
          f"chat done in {time.monotonic() - t0:.1f}s")
    assert severe == [], severe
    assert conns == {"t1": 1, "t2": 1}
