"""Fixtures for the browser tests: a chatmesh node on a free loopback port, and headless Chromium.

Self-contained on purpose (IntegrationTests/integration has its own fixtures).

Environment:
  CHATMESH_BIN   server binary (default: <repo>/.build/debug/chatmesh)
  CHATMESH_URL   use an already running node at this base URL instead of starting one
                 (tests that need to restart the server are skipped then)
  CHROMIUM_BIN / CHROMEDRIVER_BIN   override the Debian paths (/usr/bin/chromium, /usr/bin/chromedriver)
"""
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PR_SET_CHILD_SUBREAPER = 36
HEALTH_TIMEOUT_S = 20.0


def _become_child_subreaper():
    # PID 1 in our container does not reap orphans, and Chromium leaves plenty (zygote,
    # crashpad, renderers) when chromedriver goes away: adopt them so we can reap them.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


_become_child_subreaper()


# Server processes we manage ourselves: never reaped or signalled by the orphan cleanup.
_MANAGED_PIDS = set()


def _reap_exited_children():
    for pid in _direct_children(include_zombies=True):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _direct_children(include_zombies=False):
    me = str(os.getpid())
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces, so split after the last ')'
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1] == me and int(entry) not in _MANAGED_PIDS:
            if include_zombies or fields[0] != "Z":
                pids.append(int(entry))
    return pids


def _cleanup_children(grace_s=5.0):
    """Reap what exited; SIGTERM, then SIGKILL, whatever descendant got re-parented to us."""
    deadline = time.monotonic() + grace_s
    while True:
        _reap_exited_children()
        left = _direct_children()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = _direct_children()
        if not left:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + 2.0
        while _direct_children() and time.monotonic() < end:
            _reap_exited_children()
            time.sleep(0.1)
    _reap_exited_children()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_binary():
    path = os.environ.get("CHATMESH_BIN") or str(REPO / ".build" / "debug" / "chatmesh")
    if not os.path.isabs(path):
        path = str(REPO / path)
    return path


class ChatmeshNode:
    """One `chatmesh serve` process; start() waits for /healthz, stop() is idempotent."""

    def __init__(self, port=None, workdir=None):
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="chatmesh-browser-"))
        self.config = self.workdir / "cluster.conf"
        self.log_path = self.workdir / f"node-{self.port}.log"
        self.proc = None
        self._log = None

    def start(self):
        binary = server_binary()
        if not os.access(binary, os.X_OK):
            pytest.fail(f"chatmesh binary not found at {binary} (run `swift build` or set CHATMESH_BIN)")
        self.config.write_text(
            "[cluster]\n"
            "secret = test-secret\n"
            "[node a1]\n"
            f"listen = 127.0.0.1:{self.port}\n"
        )
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", str(self.config), "--node", "a1"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )
        _MANAGED_PIDS.add(self.proc.pid)
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.stop()
                pytest.fail(f"chatmesh exited with {rc} before becoming healthy:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"chatmesh /healthz not 200 within {HEALTH_TIMEOUT_S:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc is not None:
            proc.wait()
            _MANAGED_PIDS.discard(proc.pid)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class ExternalNode:
    def __init__(self, base_url):
        self.base_url = base_url.rstrip("/")

    def log_tail(self, lines=40):
        return "(external server)"


@pytest.fixture(scope="session")
def server():
    external = os.environ.get("CHATMESH_URL")
    if external:
        yield ExternalNode(external)
        return
    node = ChatmeshNode()
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.fixture
def node_factory(tmp_path):
    """Start extra nodes inside a test (e.g. to stop and restart one); all stopped at teardown."""
    if os.environ.get("CHATMESH_URL"):
        pytest.skip("needs to start its own server (CHATMESH_URL is set)")
    nodes = []

    def make(port=None):
        node = ChatmeshNode(port=port, workdir=tmp_path)
        nodes.append(node)
        return node

    try:
        yield make
    finally:
        for node in nodes:
            node.stop()


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
    _cleanup_children()


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
        _cleanup_children(grace_s=3.0)
