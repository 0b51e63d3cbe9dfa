"""Two browser tabs on DIFFERENT nodes of a 2-node mesh chat with each other through the page.

The nodes (b1, b2) come from IntegrationTests/integration/mesh_testkit.py; Chromium from conftest's
`new_browser`. The page helpers are minimal copies of those in test_page.py.
"""
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("selenium")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from mesh_testkit import MeshCluster  # noqa: E402

WAIT_S = 15
BROWSER_CONFTEST = Path(__file__).resolve().parent / "conftest.py"

READ_MESSAGES_JS = """
return Array.from(document.querySelectorAll('#messages > li')).map(function (li) {
  var t = li.querySelector('span.text');
  return {
    kind: li.classList.contains('own') ? 'own' : li.classList.contains('other') ? 'other'
        : li.classList.contains('notice') ? 'notice' : li.className,
    user: li.hasAttribute('data-user') ? li.getAttribute('data-user') : null,
    text: t ? t.textContent : null
  };
});
"""


def messages(driver):
    return driver.execute_script(READ_MESSAGES_JS)


def status(driver):
    return driver.find_element(By.ID, "status").text


def wait_for(driver, predicate, what, timeout=WAIT_S):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: predicate(d))
    except Exception as exc:
        raise AssertionError(f"timed out waiting for {what}; status {status(driver)!r}, "
                             f"messages {messages(driver)}") from exc


def wait_message(driver, kind, user, text, timeout=WAIT_S):
    want = {"kind": kind, "user": user, "text": text}
    wait_for(driver, lambda d: any({k: m[k] for k in want} == want for m in messages(d)),
             f"message {want}", timeout)


def join(driver, node, room, name):
    driver.get(node.base_url + "/")
    wait_for(driver, lambda d: d.find_element(By.ID, "join").is_displayed(), "the join form")
    for field, value in (("room", room), ("username", name)):
        el = driver.find_element(By.ID, field)
        el.clear()
        el.send_keys(value)
    driver.find_element(By.ID, "join").click()
    wait_for(driver, lambda d: status(d).startswith("connected ("), "connected status")
    wait_for(driver, lambda d: d.find_element(By.ID, "send").is_enabled(), "join ack")
    wait_message(driver, "notice", name, f"{name} joined")


def say(driver, text):
    driver.find_element(By.ID, "text").send_keys(text)
    driver.find_element(By.ID, "send").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "text").get_attribute("value") == "",
             "input cleared")


def _managed_pids():
    """conftest's set of server pids that its orphan cleanup must leave alone."""
    for mod in list(sys.modules.values()):
        if getattr(mod, "__file__", None) and Path(mod.__file__).resolve() == BROWSER_CONFTEST:
            return getattr(mod, "_MANAGED_PIDS", None)
    return None


@pytest.fixture
def mesh2(request, new_browser):
    """A 2-node mesh (b1, b2). Depends on new_browser so it is stopped before the browsers'
    cleanup runs; every node is stopped by pid, also on failure (logs printed then)."""
    managed = _managed_pids()
    cluster = MeshCluster(["b1", "b2"], register=managed.add if managed is not None else None)
    failed_before = request.session.testsfailed
    ok = False
    try:
        cluster.start()
        yield cluster
        ok = request.session.testsfailed == failed_before
    finally:
        cluster.stop()
        if not ok:
            sys.stderr.write(f"\n=== mesh logs ===\n{cluster.logs()}\n=== end ===\n")
        else:
            cluster.remove_dir()
        if managed is not None:
            for n in cluster.nodes.values():
                if n.proc is not None:
                    managed.discard(n.proc.pid)


def test_two_tabs_on_different_nodes_chat_through_the_mesh(new_browser, mesh2):
    b1, b2 = mesh2["b1"], mesh2["b2"]
    room = f"mesh-{uuid.uuid4().hex[:8]}"
    alice, bob = new_browser("alice"), new_browser("bob")
    t0 = time.monotonic()
    join(alice, b1, room, "alice")
    time.sleep(0.3)  # b1's SUB for the room reaches b2
    join(bob, b2, room, "bob")
    wait_message(alice, "notice", "bob", "bob joined")   # a join crossing b2 -> b1

    say(alice, "hello from node b1")
    wait_message(bob, "other", "alice", "hello from node b1")
    wait_message(alice, "own", "alice", "hello from node b1")
    say(bob, "hi from node b2")
    wait_message(alice, "other", "bob", "hi from node b2")
    wait_message(bob, "own", "bob", "hi from node b2")

    texts = {n: [m["text"] for m in messages(d) if m["kind"] in ("own", "other")]
             for n, d in (("alice", alice), ("bob", bob))}
    assert texts == {"alice": ["hello from node b1", "hi from node b2"],
                     "bob": ["hello from node b1", "hi from node b2"]}
    # Each tab really talks to its own node: one connection on each.
    conns = {n.name: n.healthz()["connections"] for n in (b1, b2)}
    recv = {n.name: n.counter("chatmesh_mesh_pubs_received_total") for n in (b1, b2)}
    print(f"alice on b1 (:{b1.port}), bob on b2 (:{b2.port}); connections {conns}; "
          f"PUBs received {recv}; chat done in {time.monotonic() - t0:.1f}s")
    assert conns == {"b1": 1, "b2": 1}
    assert recv["b1"] >= 2 and recv["b2"] >= 1   # bob's join + say to b1; alice's say to b2

    alice.close()   # closing the tab ends alice's session: bob on the other node sees it
    wait_message(bob, "notice", "alice", "alice left")
