"""Browser tests for the chat page served by a chatmesh node at `/`.

Needs (Debian): apt-get install -y chromium chromium-driver
and Python:     pip install -r IntegrationTests/browser/requirements.txt   (selenium, pytest)
Run:            .venv/bin/python -m pytest -v IntegrationTests/browser
The node is started by conftest.py from CHATMESH_BIN or .build/debug/chatmesh.
"""
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("selenium")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from harness.page import join, messages, open_page, say, status, wait_for, wait_message  # noqa: E402

# The page's files, which SwiftPM embeds in the binary (resources in Package.swift).
WEB_DIR = Path(__file__).resolve().parents[2] / "Sources" / "ChatServer" / "Web"
XSS = "<img src=x onerror=alert(1)>"


def page_file(name):
    """One of the page's files (index.html, chatmesh.js, chatmesh.css), as bytes, exactly as served."""
    return (WEB_DIR / name).read_bytes()


def room_name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_no_alert(driver):
    try:
        alert = driver.switch_to.alert
        text = alert.text
    except NoAlertPresentException:
        return
    alert.dismiss()
    pytest.fail(f"an alert is open: {text!r}")


def severe_console_errors(driver):
    try:
        entries = driver.get_log("browser")
    except Exception:
        return []
    return [e["message"] for e in entries if e.get("level") == "SEVERE"]


# ---------------------------------------------------------------------------------------


def test_page_assets_are_served(server):
    with urllib.request.urlopen(server.base_url + "/", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers.get_content_type() == "text/html"
        csp = resp.headers.get("Content-Security-Policy") or ""
        html = resp.read()
    assert "default-src 'self'" in csp, f"missing/weak CSP on /: {csp!r}"
    assert b'<script src="/chatmesh.js"' in html and b'href="/chatmesh.css"' in html
    with urllib.request.urlopen(server.base_url + "/chatmesh.js", timeout=5) as resp:
        assert resp.headers.get_content_type() in ("application/javascript", "text/javascript")
        script = resp.read()
    with urllib.request.urlopen(server.base_url + "/chatmesh.css", timeout=5) as resp:
        assert resp.headers.get_content_type() == "text/css"
        style = resp.read()
    # The node serves the files in Sources/ChatServer/Web byte for byte (embedded at build time:
    # a binary older than the files fails here).
    assert script == page_file("chatmesh.js")
    assert style == page_file("chatmesh.css")
    assert html == page_file("index.html")


def test_two_browsers_exchange_messages(server, new_browser):
    room = room_name("duo")
    alice, bob = new_browser("alice"), new_browser("bob")
    join(alice, server, room, "alice")
    join(bob, server, room, "bob")
    # Everyone in the room, the joiner included, sees a join notice.
    wait_message(alice, "notice", "bob", "bob joined")

    say(alice, "hello bob")
    wait_message(bob, "other", "alice", "hello bob")
    wait_message(alice, "own", "alice", "hello bob")

    say(bob, "hi alice")
    wait_message(alice, "other", "bob", "hi alice")
    wait_message(bob, "own", "bob", "hi alice")

    # Order on each side: alice's say came before bob's.
    texts = [m["text"] for m in messages(alice) if m["kind"] in ("own", "other")]
    assert texts == ["hello bob", "hi alice"]
    # bob joined after alice, so he sees his own join only.
    assert [m["user"] for m in messages(bob) if m["kind"] == "notice"] == ["bob"]
    for driver in (alice, bob):
        errors = [e for e in severe_console_errors(driver) if "favicon" not in e]
        assert not errors, f"console errors: {errors}"


def test_markup_is_shown_as_text(server, new_browser):
    room = room_name("xss")
    mallory, victim = new_browser("mallory"), new_browser("victim")
    join(mallory, server, room, XSS)          # a hostile name as well as a hostile text
    join(victim, server, room, "victim")
    say(mallory, XSS)
    wait_message(victim, "other", XSS, XSS)
    wait_message(mallory, "own", XSS, XSS)
    for driver in (victim, mallory):
        spans = driver.find_elements(By.CSS_SELECTOR, "#messages li span.text")
        assert XSS in [s.text for s in spans]
        say_span = [m for m in messages(driver) if m["kind"] in ("own", "other")][-1]
        assert say_span["text"] == XSS
        assert driver.find_elements(By.CSS_SELECTOR, "#messages img") == []
        assert driver.execute_script("return document.querySelectorAll('img').length") == 0
        assert_no_alert(driver)
    # The join notice of the hostile name is text too.
    assert any(m["kind"] == "notice" and m["user"] == XSS and m["text"] == f"{XSS} joined"
               for m in messages(mallory))


def test_forced_polling_talks_to_websocket(server, new_browser):
    room = room_name("poll")
    poller, wser = new_browser("poller"), new_browser("wser")
    join(poller, server, room, "poller", query="transport=polling", expect_transport="polling")
    join(wser, server, room, "wser", expect_transport="websocket")
    say(poller, "via long-polling")
    wait_message(wser, "other", "poller", "via long-polling")
    wait_message(poller, "own", "poller", "via long-polling")
    say(wser, "via websocket")
    wait_message(poller, "other", "wser", "via websocket")


def test_falls_back_to_polling_when_websocket_fails(server, new_browser):
    driver = new_browser("nows")
    # Every WebSocket fails the way a proxy without upgrade support makes it fail.
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": """
        window.WebSocket = function FailingWebSocket(url) {
          var self = this;
          this.readyState = 0;
          setTimeout(function () {
            self.readyState = 3;
            if (self.onerror) { self.onerror({ type: 'error' }); }
            if (self.onclose) { self.onclose({ type: 'close', code: 1006 }); }
          }, 20);
        };
        window.WebSocket.prototype.send = function () { throw new Error('not open'); };
        window.WebSocket.prototype.close = function () {};
    """})
    room = room_name("fallback")
    join(driver, server, room, "nows", expect_transport="polling")
    say(driver, "still here")
    wait_message(driver, "own", "nows", "still here")


def test_prefill_from_query_and_leave(server, new_browser):
    room = room_name("leave")
    stayer, leaver = new_browser("stayer"), new_browser("leaver")
    join(stayer, server, room, "stayer")
    open_page(leaver, server, f"room={quote(room)}&name={quote('zoe leaver')}")
    assert leaver.find_element(By.ID, "room").get_attribute("value") == room
    assert leaver.find_element(By.ID, "username").get_attribute("value") == "zoe leaver"
    leaver.find_element(By.ID, "username").send_keys(Keys.ENTER)   # submit with the keyboard
    wait_for(leaver, lambda d: d.find_element(By.ID, "send").is_enabled(), "leaver joined")
    wait_message(stayer, "notice", "zoe leaver", "zoe leaver joined")

    leaver.find_element(By.ID, "leave").click()
    wait_message(stayer, "notice", "zoe leaver", "zoe leaver left")
    assert leaver.find_element(By.ID, "join-form").is_displayed()
    assert not leaver.find_element(By.ID, "chat").is_displayed()
    assert status(leaver) == "disconnected"
    time.sleep(1.0)
    assert status(leaver) == "disconnected", "Leave must not reconnect"


def test_non_ascii_names_and_text_round_trip(server, new_browser):
    # Browsers send raw UTF-8 (JSON.stringify does not escape non-ASCII) on both transports.
    room = room_name("unicode")
    ws_user, poll_user = new_browser("zoe"), new_browser("jose")
    join(ws_user, server, room, "Zoë", expect_transport="websocket")
    join(poll_user, server, room, "José", query="transport=polling", expect_transport="polling")
    text = "héllo ✓ 👋 — 日本語"
    say(ws_user, text)
    wait_message(poll_user, "other", "Zoë", text)
    say(poll_user, text + " ¡sí!")
    wait_message(ws_user, "other", "José", text + " ¡sí!")


def test_rejected_say_is_reported(server, new_browser):
    driver = new_browser("verbose")
    join(driver, server, room_name("reject"), "verbose")
    box = driver.find_element(By.ID, "text")
    driver.execute_script("arguments[0].value = arguments[1]", box, "x" * 5000)   # past text_max (4096)
    driver.find_element(By.ID, "send").click()
    wait_for(driver, lambda d: any(m["kind"] == "notice" and "text_too_long" in (m["text"] or "")
                                   for m in messages(d)), "a text_too_long notice")
    reported = [m for m in messages(driver) if "text_too_long" in (m["text"] or "")]
    assert len(reported) == 1, f"one notice per rejection (error event + failed ack): {reported}"
    assert "error" in reported[0]["cls"].split()
    assert not [m for m in messages(driver) if m["kind"] in ("own", "other")]
    say(driver, "short is fine")
    wait_message(driver, "own", "verbose", "short is fine")


def test_invalid_room_shows_connect_error(server, new_browser):
    driver = new_browser("badroom")
    open_page(driver, server, "room=" + "r" * 300 + "&name=someone")
    driver.find_element(By.ID, "join").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "join-error").is_displayed(), "the connect error")
    assert "roomid" in driver.find_element(By.ID, "join-error").text.lower()
    assert driver.find_element(By.ID, "join-form").is_displayed()
    assert status(driver) == "disconnected"


def test_reconnects_and_rejoins_after_server_restart(node_factory, new_browser):
    node = node_factory().start()
    alice, bob = new_browser("alice"), new_browser("bob")
    room = room_name("restart")
    join(alice, node, room, "alice")
    join(bob, node, room, "bob")

    node.stop()
    for driver in (alice, bob):
        wait_for(driver, lambda d: status(d) == "reconnecting", "reconnecting status")
        assert not driver.find_element(By.ID, "send").is_enabled()
    node.start()   # same port
    for driver, name in ((alice, "alice"), (bob, "bob")):
        wait_for(driver, lambda d: status(d).startswith("connected ("), "reconnected", timeout=20)
        wait_for(driver, lambda d: d.find_element(By.ID, "send").is_enabled(), "re-joined")
        wait_for(driver, lambda d, n=name: sum(1 for m in messages(d)
                                               if m["kind"] == "notice" and m["text"] == f"{n} joined") >= 2,
                 f"{name}'s second join notice")
    say(alice, "after the restart")
    wait_message(bob, "other", "alice", "after the restart")
