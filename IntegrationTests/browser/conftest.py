"""Fixtures for the browser tests: a chatmesh node on a free loopback port, and headless Chromium.

Built on IntegrationTests/harness, as the integration suite is (processes, teardown, reaping).

Environment:
  CHATMESH_BIN   server binary (default: <repo>/.build/debug/chatmesh)
  CHATMESH_URL   use an already running node at this base URL instead of starting one
                 (tests that need to restart the server are skipped then)
  CHROMIUM_BIN / CHROMEDRIVER_BIN   override the Debian paths (/usr/bin/chromium, /usr/bin/chromedriver)
"""
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.cluster import factory, teardown  # noqa: E402
from harness.node import NodeProcess, config_text  # noqa: E402
from harness.process import become_subreaper, free_port, reap_orphans  # noqa: E402

HEALTH_TIMEOUT_S = 20.0

# PID 1 in our container does not reap orphans, and Chromium leaves plenty (zygote, crashpad,
# renderers) when chromedriver goes away: adopt them so we can reap them.
become_subreaper()


class ChatmeshNode(NodeProcess):
    """One `chatmesh serve` (node a1, no mesh) on a port that stays the same across restarts;
    start() waits for /healthz, stop() is idempotent."""

    def __init__(self, port=None, workdir=None):
        port = port or free_port()
        workdir = Path(workdir or tempfile.mkdtemp(prefix="chatmesh-browser-"))
        super().__init__(workdir, workdir / "cluster.conf", "a1", port, log_name=f"node-{port}")

    def start(self):
        self.conf_path.write_text(config_text([self], secret="test-secret",
                                              writer="IntegrationTests/browser/conftest.py"))
        try:
            return super().start(timeout=HEALTH_TIMEOUT_S)
        except RuntimeError as e:
            pytest.fail(str(e))

    def log_tail(self, lines=40):
        return "\n".join(self.log_text(10 ** 7).splitlines()[-lines:]) or "(no log)"


class ExternalNode:
    def __init__(self, base_url):
        self.base_url = base_url.rstrip("/")

    def log_tail(self, lines=40):
        return "(external server)"


@pytest.fixture(scope="session")
def server(request):
    external = os.environ.get("CHATMESH_URL")
    if external:
        return ExternalNode(external)
    return teardown(request).add(ChatmeshNode()).start()


@pytest.fixture
def node_factory(request, tmp_path):
    """Start extra nodes inside a test (e.g. to stop and restart one); all stopped at teardown."""
    if os.environ.get("CHATMESH_URL"):
        pytest.skip("needs to start its own server (CHATMESH_URL is set)")
    return factory(request, lambda port=None: ChatmeshNode(port=port, workdir=tmp_path),
                   start=False)


def _find(env, *candidates):
    path = os.environ.get(env)
    if path:
        return path
    for c in candidates:
        found = shutil.which(c)
        if found:
            return found
    return None


@pytest.fixture(scope="session", autouse=True)
def _reap_at_exit():
    yield
    reap_orphans(grace_s=5.0)


@pytest.fixture
def new_browser(tmp_path):
    """Factory for headless Chromium sessions; every one is quit at teardown, failure or not."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -r IntegrationTests/browser/requirements.txt)")
    chromium = _find("CHROMIUM_BIN", "chromium", "chromium-browser")
    chromedriver = _find("CHROMEDRIVER_BIN", "chromedriver")
    if not chromium or not chromedriver:
        if os.environ.get("CHATMESH_REQUIRE_BROWSER"):
            pytest.fail("chromium / chromedriver not found (apt-get install chromium chromium-driver)")
        pytest.skip("chromium / chromedriver not found (apt-get install chromium chromium-driver)")

    drivers = []

    def make(name="browser"):
        opts = webdriver.ChromeOptions()
        opts.binary_location = chromium
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1000,800", "--no-first-run", "--no-default-browser-check",
                    "--disable-extensions", "--disable-background-networking",
                    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                    f"--user-data-dir={tmp_path / ('profile-' + name + '-' + str(len(drivers)))}"):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=chromedriver,
                          log_output=str(tmp_path / f"chromedriver-{name}-{len(drivers)}.log"))
        driver = webdriver.Chrome(service=service, options=opts)
        drivers.append(driver)
        return driver

    try:
        yield make
    finally:
        for driver in drivers:
            with contextlib.suppress(Exception):
                driver.quit()
        reap_orphans(grace_s=3.0)
