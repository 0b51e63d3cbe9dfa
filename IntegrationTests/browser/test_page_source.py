"""Static checks on the chat page's files (Sources/ChatServer/Web, embedded in the binary by
SwiftPM): the page must work under the node's strict CSP and never turn remote data into markup.
No browser or server needed (node is used when installed)."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

WEB_DIR = Path(__file__).resolve().parents[2] / "Sources" / "ChatServer" / "Web"
PAGE_FILES = ("index.html", "chatmesh.js", "chatmesh.css")


def page_text(name):
    return (WEB_DIR / name).read_text(encoding="utf-8")


def test_script_is_valid_javascript():
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    result = subprocess.run([node, "--check", str(WEB_DIR / "chatmesh.js")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_html_has_nothing_inline():
    html = page_text("index.html")
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/chatmesh.js" defer>']
    assert "<style" not in html
    assert not re.search(r"\sstyle\s*=", html), "inline style attribute (blocked by style-src 'self')"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler (blocked by CSP)"
    assert not re.search(r"(src|href)\s*=\s*\"(https?:)?//", html), "external resource"
    for element_id in ("join-form", "room", "username", "join", "chat", "messages", "send-form",
                       "text", "send", "status", "leave"):
        assert f'id="{element_id}"' in html
    for label_for in ("room", "username", "text"):
        assert f'<label for="{label_for}"' in html


def test_script_never_builds_markup_from_strings():
    script = page_text("chatmesh.js")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink


def test_style_loads_nothing_from_elsewhere():
    style = page_text("chatmesh.css")
    assert "@import" not in style
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", style), "external resource (blocked by default-src 'self')"


@pytest.mark.parametrize("name", PAGE_FILES)
def test_page_files_are_utf8_text(name):
    # Served with `charset=utf-8`; a stray byte order mark or CR would be served as-is too.
    data = (WEB_DIR / name).read_bytes()
    data.decode("utf-8")
    assert not data.startswith(b"\xef\xbb\xbf"), "byte order mark"
    assert b"\r" not in data, "CR line endings"
