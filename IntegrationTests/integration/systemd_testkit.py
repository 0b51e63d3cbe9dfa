"""Helpers for the systemd tests: a NOTIFY_SOCKET listener, `chatmesh serve` run plainly or
under `systemd-socket-activate` (Debian's systemd tools; PID 1 need not be systemd), and the
unit files of deploy/systemd/ prepared for `systemd-analyze verify`.

    from systemd_testkit import notify_listener, node_runner  # noqa: F401  (the fixtures)

    def test_x(notify_listener, node_runner):
        node = node_runner(conf, listens=[("127.0.0.1", port)], fdnames=["client"],
                           env={"NOTIFY_SOCKET": notify_listener.path})
        ...

Every process is stopped by pid (SIGTERM, SIGKILL after a bound), also when the test fails;
its log is printed then. The conftest makes the test process a subreaper and reaps orphans.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from chatmesh_testkit import REPO, WAIT, chatmesh_binary, free_ports  # noqa: F401
from harness.cluster import factory, teardown
from harness.node import NodeProcess as ServeProcess, config_text
from harness.process import popen, wait_on  # noqa: F401 (popen re-exported)

UNIT_DIR = REPO / "deploy" / "systemd"
INSTALL_SCRIPT = REPO / "scripts" / "install-systemd.sh"

# Variables through which systemd talks to a service; a test runner started by systemd may
# carry its own, which must never leak into the node under test.
SYSTEMD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
               "LISTEN_FDNAMES")


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}
    env.update(extra)
    return env


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} not installed (Debian package systemd)")
    return path


# --------------------------------------------------------------------------------------------
# sd_notify


class NotifyListener:
    """An AF_UNIX datagram socket standing in for systemd's notification socket.

    Records every line of every datagram as (monotonic time, sender pid, line); the sender pid
    comes from SCM_CREDENTIALS, as systemd checks it for NotifyAccess=main. Hooks run on the
    receiving thread the moment a line arrives, before it is recorded, so a test can look at
    the world exactly when (say) READY=1 came in."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cm-notify-")  # short: sun_path has 108 bytes
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.1)
        self.records: list[tuple[float, int | None, str]] = []
        self.hooks: list = []
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-listener", daemon=True)
        self._thread.start()

    def _run(self):
        cred_size = struct.calcsize("iII")
        while not self._stop.is_set():
            try:
                data, ancdata, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(cred_size))
            except socket.timeout:
                continue
            except OSError:
                return
            t = time.monotonic()
            pid = None
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:cred_size])[0]
            for line in data.decode("utf-8", "replace").split("\n"):
                if not line:
                    continue
                for hook in list(self.hooks):
                    try:
                        hook(line, t, pid)
                    except Exception as e:  # a broken hook must not kill the listener
                        sys.stderr.write(f"notify hook failed: {e!r}\n")
                with self.cond:
                    self.records.append((t, pid, line))
                    self.cond.notify_all()

    def lines(self, prefix: str = "") -> list[tuple[float, int | None, str]]:
        with self.cond:
            return [r for r in self.records if r[2].startswith(prefix)]

    def wait_for(self, prefix: str, count: int = 1, timeout: float = WAIT):
        """Waits until `count` lines starting with `prefix` arrived; returns them."""
        return wait_on(self.cond,
                       lambda: len(got := [r for r in self.records if r[2].startswith(prefix)])
                       >= count and got, timeout,
                       lambda: f"no {count} x {prefix!r} within {timeout}s; got "
                               f"{[r[2] for r in self.records][-20:]}")

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# chatmesh under test


def cluster_conf(nodes: dict[str, tuple[int, int | None]], cluster: dict | None = None,
                 extra: str = "") -> str:
    """A cluster.conf: nodes = {name: (listen port, mesh port or None)} on 127.0.0.1."""
    return config_text([SimpleNamespace(name=name, host="127.0.0.1", port=port,
                                        mesh_host="127.0.0.1", mesh_port=mesh)
                        for name, (port, mesh) in nodes.items()],
                       secret="systemd-test-secret", cluster=cluster, extra=extra,
                       writer="IntegrationTests/integration/systemd_testkit.py")


class NodeProcess(ServeProcess):
    """`chatmesh serve --config CONF [--node N]`, plainly or, with `listens`, under
    `systemd-socket-activate -l ADDR... [--fdname=A:B] -E VAR... chatmesh serve ...`.

    systemd-socket-activate binds the addresses, waits for the first connection attempt on
    any of them and then execs chatmesh in its own process (same pid), passing the sockets
    as fds 3, 4, ... with LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES, and only the variables named
    with -E: the minimal environment systemd gives a service too. `env` is added to an
    environment without systemd's variables."""

    stop_timeout = 15.0

    def __init__(self, workdir: Path, conf_path: Path, node: str | None = None,
                 listens: list[tuple[str, int]] | None = None, fdnames: list[str] | None = None,
                 env: dict | None = None, args: list[str] | None = None):
        super().__init__(workdir, conf_path, node, args=args,
                         log_name=f"{node or 'activated'}-{os.urandom(4).hex()}")
        self.node = node
        self.listens = list(listens or [])
        self.fdnames = fdnames
        self.extra_env = dict(env or {})
        self.env = clean_env(**self.extra_env)

    @property
    def activated(self) -> bool:
        return bool(self.listens)

    def argv(self) -> list[str]:
        serve = self.serve_command()
        if not self.activated:
            return serve
        cmd = [tool("systemd-socket-activate")]
        for host, port in self.listens:
            cmd += ["-l", f"{host}:{port}"]
        if self.fdnames:
            cmd.append("--fdname=" + ":".join(self.fdnames))
        for name in self.extra_env:
            cmd += ["-E", name]
        return cmd + serve

    def wait_log(self, needle: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        while needle not in (text := self.log_text(10 ** 7)):
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited ({self.proc.returncode}) before logging "
                                     f"{needle!r}:\n{text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not logged within {timeout}s:\n{text}")
            time.sleep(0.02)
        return text

    def wait_listening(self, port: int, timeout: float = 10.0):
        """Under systemd-socket-activate: waits until it logged that it listens on `port`
        (without connecting, which would start chatmesh)."""
        self.wait_log(f"Listening on 127.0.0.1:{port}", timeout)

    def wait_healthy(self, port: int, timeout: float = 20.0) -> dict:
        self.port = port
        return super().wait_healthy(timeout)

    def describe(self) -> str:
        return " ".join(self.argv())


def listening_inodes(port: int) -> set[int]:
    """Inodes of the TCP sockets listening on 127.0.0.1:port or a wildcard (this netns)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            local, state, inode = f[1], f[3], int(f[9])
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                found.add(inode)
    return found


def fd_inode(pid: int, fd: int) -> int | None:
    """The socket inode behind /proc/PID/fd/FD, or None."""
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None
    if target.startswith("socket:["):
        return int(target[len("socket:["):-1])
    return None


def socket_fds(pid: int) -> dict[int, int]:
    """{fd: socket inode} of a process."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        inode = fd_inode(pid, int(name))
        if inode is not None:
            out[int(name)] = inode
    return out


def threads_named(pid: int, prefix: str) -> list[int]:
    tids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith(prefix):
            tids.append(int(tid))
    return sorted(tids)


# --------------------------------------------------------------------------------------------
# Stalling one thread: ptrace(PTRACE_SEIZE) + PTRACE_INTERRUPT stops that thread alone (a
# ptrace-stop, not a group-stop as SIGSTOP would be); PTRACE_DETACH lets it run again. The
# calls must come from the thread that seized it.

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000


class ThreadStall:
    def __init__(self, tid: int):
        self.tid = tid
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                                     ctypes.c_void_p]
        self.libc.ptrace.restype = ctypes.c_long
        self.stalled = False

    def _ptrace(self, request: int, what: str):
        if self.libc.ptrace(request, self.tid, None, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"ptrace({what}, {self.tid}): {os.strerror(err)}")

    def stall(self):
        self._ptrace(PTRACE_SEIZE, "SEIZE")
        self._ptrace(PTRACE_INTERRUPT, "INTERRUPT")
        os.waitpid(self.tid, WALL)  # returns once the thread is in its ptrace-stop
        self.stalled = True

    def resume(self):
        if self.stalled:
            self._ptrace(PTRACE_DETACH, "DETACH")
            self.stalled = False


# --------------------------------------------------------------------------------------------
# Unit files


def install_dropins(config: Path, destdir: Path, *extra: str) -> subprocess.CompletedProcess:
    """scripts/install-systemd.sh [extra...] CONFIG DESTDIR with this repo's binary (run
    again while a concurrent build rewrites the binary)."""
    for _ in range(50):
        r = subprocess.run([str(INSTALL_SCRIPT), *extra, str(config), str(destdir)],
                           env=clean_env(CHATMESH_BIN=str(chatmesh_binary())),
                           capture_output=True, text=True, timeout=60)
        if not any(m in r.stderr for m in BINARY_BUSY):
            break
        time.sleep(0.2)
    return r


# What running a binary that a build is rewriting looks like.
BINARY_BUSY = ("Text file busy", "Exec format error", "No such file or directory")


def verify_tree(units_from: Path, dropins_from: Path | None, dest: Path) -> Path:
    """Copies the unit templates (ExecStart pointed at the built binary, since verify wants
    it to exist) and the drop-in dirs into `dest`, a flat unit dir for systemd-analyze."""
    dest.mkdir(parents=True, exist_ok=True)
    for unit in sorted(units_from.iterdir()):
        if unit.is_file():
            text = unit.read_text()
            text = text.replace("/usr/local/bin/chatmesh", str(chatmesh_binary()))
            (dest / unit.name).write_text(text)
    if dropins_from is not None:
        for d in sorted(dropins_from.glob("*.d")):
            shutil.copytree(d, dest / d.name, dirs_exist_ok=True)
    return dest


def systemd_analyze(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([tool("systemd-analyze"), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=clean_env(SYSTEMD_LOG_COLOR="0"))


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def notify_listener():
    listener = NotifyListener()
    yield listener
    listener.close()


class _Workdir:
    """A temp dir kept (with its logs) when the test failed."""

    def __init__(self):
        self.path = Path(tempfile.mkdtemp(prefix="chatmesh-systemd-"))

    def shutdown(self) -> list[str]:
        return []

    def dump_logs(self) -> str:
        return f"(work dir {self.path})\n"

    def remove_dir(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@pytest.fixture
def workdir(request):
    return teardown(request).add(_Workdir()).path


@pytest.fixture
def node_runner(request, workdir):
    """node_runner(conf_text or path, node=None, listens=None, fdnames=None, env=None,
    args=None) -> NodeProcess (spawned). All stopped by pid at teardown; logs are printed when
    the test failed or a process died unexpectedly."""
    made = []

    def make(conf, node=None, listens=None, fdnames=None, env=None, args=None) -> NodeProcess:
        if isinstance(conf, Path):
            conf_path = conf
        else:
            conf_path = workdir / f"cluster-{len(made)}.conf"
            conf_path.write_text(conf)
        p = NodeProcess(workdir, conf_path, node=node, listens=listens, fdnames=fdnames,
                        env=env, args=args)
        made.append(p)
        p.spawn()
        return p

    return factory(request, make, start=False)
