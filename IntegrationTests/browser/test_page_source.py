"""Static checks on ChatPage.swift: the page must work under the node's strict CSP and never
turn remote data into markup. No browser or server needed (node is used when installed)."""
import re
import shutil
import subprocess

import pytest

from test_page import chat_page_literal


def test_script_is_valid_javascript(tmp_path):
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    path = tmp_path / "chatmesh.js"
    path.write_text(chat_page_literal("script"))
    result = subprocess.run([node, "--check", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_html_has_nothing_inline():
    html = chat_page_literal("html")
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
    script = chat_page_literal("script")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink


def test_literals_do_not_contain_the_raw_string_terminator():
    for name in ("html", "script", "style"):
        assert '"""#' not in chat_page_literal(name)
