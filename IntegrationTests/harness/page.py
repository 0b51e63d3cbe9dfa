"""The chat page in headless Chromium, as the browser tests drive and read it (selenium)."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WAIT_S = 15

READ_MESSAGES_JS = """
return Array.from(document.querySelectorAll('#messages > li')).map(function (li) {
  var t = li.querySelector('span.text');
  return {
    kind: li.classList.contains('own') ? 'own' : li.classList.contains('other') ? 'other'
        : li.classList.contains('notice') ? 'notice' : li.className,
    cls: li.className,
    user: li.hasAttribute('data-user') ? li.getAttribute('data-user') : null,
    text: t ? t.textContent : null
  };
});
"""


def messages(driver) -> list[dict]:
    """The page's message list: {kind: own|other|notice, cls, user, text} per line."""
    return driver.execute_script(READ_MESSAGES_JS)


def status(driver) -> str:
    return driver.find_element(By.ID, "status").text


def page_state(driver) -> dict:
    """What a timeout message shows: status (and its title), messages, the join error."""
    state = {"status": status(driver),
             "status_title": driver.find_element(By.ID, "status").get_attribute("title"),
             "messages": messages(driver)}
    errors = driver.find_elements(By.ID, "join-error")
    if errors:
        state["join_error"] = errors[0].text
    return state


def wait_for(driver, predicate, what, timeout=WAIT_S):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: predicate(d))
    except Exception as exc:
        raise AssertionError(f"timed out waiting for {what}; page state: "
                             f"{page_state(driver)}") from exc


def wait_message(driver, kind, user, text, timeout=WAIT_S):
    want = {"kind": kind, "user": user, "text": text}
    wait_for(driver, lambda d: any({k: m[k] for k in want} == want for m in messages(d)),
             f"message {want}", timeout)


def join_notices(driver, name) -> int:
    return sum(1 for m in messages(driver) if m["kind"] == "notice" and m["text"] == f"{name} joined")


def base_url(target) -> str:
    """A base URL given as a string or as anything with `base_url` (a node, a server)."""
    return target if isinstance(target, str) else target.base_url


def open_page(driver, target, query=""):
    driver.get(base_url(target) + "/" + (("?" + query) if query else ""))
    wait_for(driver, lambda d: d.find_element(By.ID, "join").is_displayed(), "the join form")


def join(driver, target, room, name, query="", expect_transport=None):
    """Open the page, fill the form by typing, join, and wait until the join is acknowledged
    and the page shows its own join notice."""
    open_page(driver, target, query)
    for field, value in (("room", room), ("username", name)):
        el = driver.find_element(By.ID, field)
        el.clear()
        el.send_keys(value)
    driver.find_element(By.ID, "join").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "chat").is_displayed(), "the chat view")
    wait_for(driver, lambda d: status(d).startswith("connected ("), "connected status")
    if expect_transport:
        assert status(driver) == f"connected ({expect_transport})"
    wait_for(driver, lambda d: d.find_element(By.ID, "send").is_enabled(), "join ack (send enabled)")
    wait_message(driver, "notice", name, f"{name} joined")
    assert not driver.find_element(By.ID, "join-form").is_displayed()


def say(driver, text):
    box = driver.find_element(By.ID, "text")
    if all(ord(c) <= 0xFFFF for c in text):
        box.send_keys(text)
    else:   # chromedriver cannot type characters outside the BMP (emoji)
        driver.execute_script("arguments[0].value = arguments[1]", box, text)
    driver.find_element(By.ID, "send").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "text").get_attribute("value") == "", "input cleared")


def say_both_ways(alice, bob, first: str, second: str) -> None:
    """Alice says `first`, bob `second`, each seen by the other and echoed to its sender; then
    both pages show exactly those two says, in that order."""
    for speaker, name, listener, text in ((alice, "alice", bob, first), (bob, "bob", alice, second)):
        say(speaker, text)
        wait_message(listener, "other", name, text)
        wait_message(speaker, "own", name, text)
    texts = {n: [m["text"] for m in messages(d) if m["kind"] in ("own", "other")]
             for n, d in (("alice", alice), ("bob", bob))}
    assert texts == {"alice": [first, second], "bob": [first, second]}
