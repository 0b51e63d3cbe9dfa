"""Child processes of the test run: started with their output in a log file, stopped by pid.

`stop_process` is the one SIGTERM (or SIGQUIT) - wait - SIGKILL sequence of the suites and the
bench; `popen` the one retry while a build rewrites the binary (ETXTBSY); `ChildProcess` a
process with one log file per start; `NodeProcess` a `chatmesh serve`. The test process is
made a child subreaper, so orphans (nginx workers, Chromium helpers, grandchildren of a
supervisor) come back to it and `reap_orphans` can stop and reap them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
WAIT = 5.0  # seconds: the default for every wait in the suites

PR_SET_CHILD_SUBREAPER = 36

# Processes the harness started and stops itself: the orphan cleanup leaves them alone.
MANAGED_PIDS: set[int] = set()


def chatmesh_binary() -> Path:
    env = os.environ.get("CHATMESH_BIN")
    if not env:
        return REPO / ".build" / "debug" / "chatmesh"
    path = Path(env)
    return path if path.is_absolute() else REPO / path


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all bound at once, so they differ: two calls for one
    port each can return the same port)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def free_port() -> int:
    return free_ports(1)[0]


def wait_until(pred, timeout: float = WAIT, what: str = "condition", interval: float = 0.02):
    """Polls pred() (no locks held meanwhile) until it returns a truthy value; returns it
    (asserts on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_on(cond: threading.Condition, pred, timeout: float, failure, result=None):
    """Waits on `cond` (notified whenever what `pred` reads changes) until `pred()` holds;
    returns `result()` if given, else pred's value, both taken under the lock. After `timeout`
    raises AssertionError(failure())."""
    deadline = time.monotonic() + timeout
    with cond:
        while not (value := pred()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(failure())
            cond.wait(left)
        return result() if result is not None else value


def close_quietly(thing) -> None:
    """Closes a socket or file that may be broken or closed already."""
    try:
        thing.close()
    except OSError:
        pass


def popen(cmd: list[str], **kw) -> subprocess.Popen:
    """subprocess.Popen, retried while the binary is being rewritten by a build (ETXTBSY)."""
    for attempt in range(100):
        try:
            return subprocess.Popen(cmd, **kw)
        except OSError as e:
            if e.errno != errno.ETXTBSY or attempt == 99:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


def signal_pid(pid: int, sig: int) -> bool:
    """os.kill that tolerates a process already gone; returns whether it was signalled."""
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 5.0,
                 also_kill=None) -> int | None:
    """Stops `proc` by pid: SIGCONT (a SIGSTOPped process could not act on the signal), `sig`,
    and SIGKILL if it has not exited after `timeout` s. `also_kill()` names more pids (nginx's
    workers) to SIGKILL with it then. Returns the exit status (None if never started)."""
    if proc is None:
        return None
    if proc.poll() is None:
        signal_pid(proc.pid, signal.SIGCONT)
        signal_pid(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in [proc.pid, *(also_kill() if also_kill else [])]:
                signal_pid(pid, signal.SIGKILL)
            proc.wait(timeout=5)
    return proc.returncode


# --------------------------------------------------------------------------------------------
# Orphans: the test process as a child subreaper


def reap(pid: int) -> None:
    """Reaps `pid` if it is our child and has exited (orphans are re-parented to us)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def become_subreaper() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _stat_fields(pid: str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may contain spaces, so split after the last ')'
    return stat.rsplit(")", 1)[1].split()


def children_of(pid: int, include_zombies: bool = True) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        fields = _stat_fields(d)
        if fields and len(fields) > 1 and fields[1] == str(pid) and \
                (include_zombies or fields[0] != "Z"):
            kids.append(int(d))
    return kids


def _orphans(include_zombies: bool = False, spare_managed: bool = True) -> list[int]:
    return [p for p in children_of(os.getpid(), include_zombies)
            if not (spare_managed and p in MANAGED_PIDS)]


def _reap_exited(spare_managed: bool = True) -> None:
    for pid in _orphans(True, spare_managed):
        reap(pid)


def reap_orphans(grace_s: float = 0.0, spare_managed: bool = True) -> None:
    """Stops and reaps our children (orphans re-parented to us, leftovers; with spare_managed
    not the processes the harness stops itself): first `grace_s` s for them to exit by
    themselves, then SIGTERM, then SIGKILL."""
    deadline = time.monotonic() + grace_s
    while True:
        _reap_exited(spare_managed)
        if not _orphans(False, spare_managed) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = _orphans(False, spare_managed)
        if not left:
            break
        for pid in left:
            signal_pid(pid, sig)
        end = time.monotonic() + (5.0 if sig == signal.SIGTERM else 2.0)
        while _orphans(False, spare_managed) and time.monotonic() < end:
            _reap_exited(spare_managed)
            time.sleep(0.05)
    _reap_exited(spare_managed)


# --------------------------------------------------------------------------------------------
# A child process with one log file per start


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else "...(cut)...\n" + text[-limit:]


class ChildProcess:
    """A process started by `spawn()` with stdout and stderr in `<workdir>/<log_name>.<n>.log`
    (n counts the starts), stopped by pid with `stop_signal`, SIGKILL after `stop_timeout`.
    Subclasses say what to run (`argv()`), and may set `env`, `cwd` and `stdout_path`
    (stdout in a file of its own)."""

    stop_signal = signal.SIGTERM
    stop_timeout = 5.0
    what = "process"

    def __init__(self, workdir: Path, log_name: str):
        self.workdir = Path(workdir)
        self.log_name = log_name
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self.expect_exit = False      # stopped or killed on purpose: no failure at teardown
        self.env: dict | None = None
        self.cwd: Path | None = None
        self.stdout_path: Path | None = None
        self._files: list = []

    def argv(self) -> list[str]:
        """The command line to run."""
        raise NotImplementedError

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.log_name}.{self.generation}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # -- lifecycle ---------------------------------------------------------------------------
    def spawn(self) -> float:
        """Starts the process without waiting; returns the monotonic time just before."""
        cmd = self.argv()
        self._close_files()
        self.generation += 1
        log = open(self.log_path, "wb")
        out = open(self.stdout_path, "ab") if self.stdout_path else log
        self._files = [log] + ([out] if out is not log else [])
        if self.proc is not None:  # a restart: the old pid is gone (or an orphan now)
            MANAGED_PIDS.discard(self.proc.pid)
        t = time.monotonic()
        self.proc = popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=log,
                          cwd=self.cwd or self.workdir, env=self.env)
        MANAGED_PIDS.add(self.proc.pid)
        self.expect_exit = False
        return t

    def start(self, timeout: float = 20.0) -> "ChildProcess":
        """spawn(), then wait_started(timeout); stopped again if that fails."""
        self.spawn()
        try:
            self.wait_started(timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def wait_started(self, timeout: float) -> None:
        """Waits until the process serves (a subclass says how); nothing by default."""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def died(self) -> bool:
        """Exited although nobody stopped it."""
        return self.proc is not None and self.proc.poll() is not None and not self.expect_exit

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill9(self) -> None:
        self.expect_exit = True
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=5)
        self._close_files()

    def sigstop(self) -> None:
        self.signal(signal.SIGSTOP)

    def sigcont(self) -> None:
        self.signal(signal.SIGCONT)

    def terminate(self) -> float | None:
        """SIGCONT and SIGTERM now, without waiting (stop() waits); returns the monotonic time
        it was sent."""
        if not self.alive():
            return None
        self.expect_exit = True
        t = time.monotonic()
        signal_pid(self.proc.pid, signal.SIGCONT)
        signal_pid(self.proc.pid, signal.SIGTERM)
        return t

    def stop(self, sig: int | None = None, timeout: float | None = None) -> int | None:
        """Stops the process on purpose, by pid; returns its exit status."""
        if self.proc is None:
            return None
        self.expect_exit = True
        rc = stop_process(self.proc, sig or self.stop_signal,
                          self.stop_timeout if timeout is None else timeout,
                          also_kill=self.also_kill)
        MANAGED_PIDS.discard(self.proc.pid)
        self._close_files()
        return rc

    also_kill = None  # a subclass's extra pids to SIGKILL with it (see stop_process)

    def _close_files(self) -> None:
        for f in self._files:
            close_quietly(f)
        self._files = []

    # -- logs --------------------------------------------------------------------------------
    def log_text(self, limit: int = 12000, all_generations: bool = False) -> str:
        gens = range(1, self.generation + 1) if all_generations else [self.generation]
        text = ""
        for g in gens:
            try:
                text += (self.workdir / f"{self.log_name}.{g}.log").read_bytes().decode(
                    "utf-8", "replace")
            except OSError:
                pass
        return cut(text, limit)

    def stdout_text(self) -> str:
        path = self.stdout_path or self.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def describe(self) -> str:
        return self.log_name

    # -- teardown (see harness.teardown) ----------------------------------------------------
    def shutdown(self) -> list[str]:
        """Stops it; returns the names of watched processes that died on their own (none
        here: a helper such as redis-server may be stopped by the test in any way)."""
        self.stop()
        return []

    def remove_dir(self) -> None:
        """Deletes what only this process wrote (nothing by default: its workdir is shared)."""

    def dump_logs(self, limit: int = 6000) -> str:
        rc = None if self.proc is None else self.proc.poll()
        return (f"--- {self.what} {self.describe()} (exit {rc}) ---\n"
                f"{self.log_text(limit, all_generations=True)}\n")


def wait_ready(proc: subprocess.Popen, probe, what: str, log_text, timeout: float = 20.0,
               interval: float = 0.02):
    """Polls `probe()` until it returns a truthy value and returns that; fails at once (with
    `log_text()`) if `proc` exits meanwhile, and after `timeout` with the last thing the probe
    said. A probe returns a falsy value or raises OSError (refused, reset, HTTP errors) while
    the process is not ready yet; a str it returns says why."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} during start\n{log_text()}")
        try:
            value = probe()
            if value and not isinstance(value, str):
                return value
            last = value or last
        except OSError as e:  # requests' exceptions are OSErrors too
            last = repr(e)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout}s (last: {last})\n{log_text()}")
        time.sleep(interval)


def wait_for_healthz(proc, base_url: str, what: str, log_text, timeout: float = 20.0,
                     interval: float = 0.02) -> dict:
    """Polls `base_url`/healthz until it answers 200 and returns the body."""
    def probe():
        r = requests.get(base_url + "/healthz", timeout=1)
        return r.json() if r.status_code == 200 else f"HTTP {r.status_code}: {r.text[:200]}"

    return wait_ready(proc, probe, f"{what}: /healthz", log_text, timeout, interval)


def wait_port(proc: subprocess.Popen, host: str, port: int, what: str, log_text,
              timeout: float = 20.0, interval: float = 0.02) -> None:
    """Waits until `host:port` accepts a connection."""
    def probe():
        with socket.create_connection((host, port), timeout=0.5):
            return True

    wait_ready(proc, probe, f"{what} on port {port}", log_text, timeout, interval)
