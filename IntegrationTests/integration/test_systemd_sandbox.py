"""Does chatmesh run inside the seccomp part of its unit's sandbox?

PID 1 here is not systemd, so the unit cannot be started for real. The settings most likely
to break a Swift binary at run time are the seccomp-based ones, and those can be rebuilt
with libseccomp (systemd's own dependency) exactly as chatmesh@.service asks for them:

    SystemCallFilter=@system-service     allow-list, from `systemd-analyze syscall-filter`
    SystemCallErrorNumber=EPERM          what a call outside the list gets
    SystemCallArchitectures=native       libseccomp's default: the native ABI only
    MemoryDenyWriteExecute=yes           mmap(W|X), mprotect/pkey_mprotect(X), shmat(SHM_EXEC)
    RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6   socket() of any other family
    NoNewPrivileges=yes, LimitNOFILE=65536

A two-node mesh runs under that filter (with NOTIFY_SOCKET and WATCHDOG_USEC, so sd_notify
runs too), clients chat across it, and it drains on SIGTERM. Control: the same filter makes
a W+X mapping, a netlink socket and chroot() fail for a small python process.
The file-system and user settings (DynamicUser, ProtectSystem, PrivateTmp, ...) are not
emulated here.
"""

from __future__ import annotations

import ctypes
import errno
import resource
import subprocess
import sys
import time
import types
import uuid
from functools import lru_cache

import pytest
import requests

from chatmesh_testkit import RecordingClient, chatmesh_binary, join_msg, say_msg
from systemd_testkit import (clean_env, cluster_conf, free_ports, notify_listener,  # noqa: F401
                             popen, systemd_analyze, tool, workdir)

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_GT, SCMP_CMP_EQ, SCMP_CMP_MASKED_EQ = 1, 2, 6, 4, 7
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10


def scmp_act_errno(e: int) -> int:
    return 0x00050000 | (e & 0xFFFF)


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


@lru_cache(maxsize=None)
def syscall_set(name: str) -> frozenset[str]:
    """The system calls of a systemd syscall set, nested sets expanded."""
    r = systemd_analyze("syscall-filter", name)
    assert r.returncode == 0, r.stderr
    out: set[str] = set()
    for line in r.stdout.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        out |= syscall_set(item) if item.startswith("@") else {item}
    return frozenset(out)


class UnitSeccomp:
    """Two libseccomp filters built in this process and loaded in the child before exec
    (stacked filters: the kernel applies the strictest answer of all)."""

    def __init__(self):
        try:
            self.lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        except OSError as e:
            pytest.skip(f"libseccomp not available: {e}")
        lib = self.lib
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                               ctypes.c_uint, ctypes.POINTER(ArgCmp)]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        self.allowed = syscall_set("@system-service")
        assert {"execve", "socket", "epoll_wait", "sendmsg"} <= self.allowed

        # 1. SystemCallFilter=@system-service with SystemCallErrorNumber=EPERM
        self.allow_list = lib.seccomp_init(scmp_act_errno(errno.EPERM))
        unknown = 0
        for name in sorted(self.allowed):
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr < 0:
                unknown += 1  # another architecture's call (e.g. arm_fadvise64_64)
                continue
            self._rule(self.allow_list, SCMP_ACT_ALLOW, nr)
        # 2. MemoryDenyWriteExecute=yes and RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
        self.restrictions = lib.seccomp_init(SCMP_ACT_ALLOW)
        eperm, eafnosupport = scmp_act_errno(errno.EPERM), scmp_act_errno(errno.EAFNOSUPPORT)
        wx = PROT_WRITE | PROT_EXEC
        self._rule(self.restrictions, eperm, self._nr("mmap"), (2, SCMP_CMP_MASKED_EQ, wx, wx))
        for call in ("mprotect", "pkey_mprotect"):
            self._rule(self.restrictions, eperm, self._nr(call),
                       (2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
        self._rule(self.restrictions, eperm, self._nr("shmat"),
                   (2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC))
        socket_nr = self._nr("socket")
        self._rule(self.restrictions, eafnosupport, socket_nr, (0, SCMP_CMP_LT, AF_UNIX, 0))
        self._rule(self.restrictions, eafnosupport, socket_nr, (0, SCMP_CMP_GT, AF_INET6, 0))
        for family in range(AF_INET + 1, AF_INET6):
            self._rule(self.restrictions, eafnosupport, socket_nr, (0, SCMP_CMP_EQ, family, 0))

    def _nr(self, name: str) -> int:
        nr = self.lib.seccomp_syscall_resolve_name(name.encode())
        assert nr >= 0, name
        return nr

    def _rule(self, ctx, action: int, nr: int, *cmps):
        arr = (ArgCmp * max(1, len(cmps)))(*[ArgCmp(*c) for c in cmps])
        rc = self.lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), arr)
        assert rc == 0, (action, nr, cmps, rc)

    def preexec(self):
        """Runs in the child between fork and exec: limits, then the filters (libseccomp
        sets NO_NEW_PRIVS itself, as NoNewPrivileges=yes does)."""
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        # LimitNOFILE=65536, or what a container allows
        limit = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
        for ctx in (self.restrictions, self.allow_list):
            if self.lib.seccomp_load(ctx) != 0:
                raise OSError("seccomp_load failed")


CONTROL = r"""
import errno, mmap, os, socket
out = []
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    out.append("wx-mapped")
except OSError as e:
    out.append("wx:" + errno.errorcode[e.errno])
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    out.append("netlink-opened")
except OSError as e:
    out.append("netlink:" + errno.errorcode[e.errno])
try:
    os.chroot("/")
    out.append("chrooted")
except OSError as e:
    out.append("chroot:" + errno.errorcode[e.errno])
socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
out.append("inet:ok")
print(" ".join(out))
"""


@pytest.fixture(scope="module")
def unit_seccomp():
    tool("systemd-analyze")
    return UnitSeccomp()


def test_filter_is_in_force(unit_seccomp):
    r = subprocess.run([sys.executable, "-c", CONTROL], capture_output=True, text=True,
                       timeout=30, preexec_fn=unit_seccomp.preexec)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["wx:EPERM", "netlink:EAFNOSUPPORT", "chroot:EPERM", "inet:ok"]


def test_mesh_runs_in_the_unit_seccomp_sandbox(unit_seccomp, notify_listener, workdir):
    p1, m1, p2, m2 = free_ports(4)
    conf = workdir / "cluster.conf"
    conf.write_text(cluster_conf({"a1": (p1, m1), "a2": (p2, m2)}))
    procs = {}
    logs = {}
    try:
        for name in ("a1", "a2"):
            logs[name] = open(workdir / f"{name}.log", "wb")
            procs[name] = popen(
                [str(chatmesh_binary()), "serve", "--config", str(conf), "--node", name],
                stdin=subprocess.DEVNULL, stdout=logs[name], stderr=subprocess.STDOUT,
                cwd=workdir, preexec_fn=unit_seccomp.preexec,
                env=clean_env(NOTIFY_SOCKET=notify_listener.path, WATCHDOG_USEC="2000000"))
        notify_listener.wait_for("READY=1", count=2, timeout=20)
        for name, proc in procs.items():  # the filters are really on the node processes
            status = dict(line.split(":\t", 1) for line in
                          open(f"/proc/{proc.pid}/status").read().splitlines() if ":\t" in line)
            assert (status["Seccomp"].strip(), status["NoNewPrivs"].strip()) == ("2", "1"), name
            assert status.get("Seccomp_filters", "2").strip() == "2", name
        deadline = time.monotonic() + 10
        while True:
            ups = [requests.get(f"http://127.0.0.1:{p}/healthz", timeout=5).json()["mesh"]
                   ["peers_up"] for p in (p1, p2)]
            if ups == [["a2"], ["a1"]]:
                break
            assert time.monotonic() < deadline, ups
            time.sleep(0.05)
        notify_listener.wait_for("WATCHDOG=1", count=4, timeout=5)

        room = f"sb-{uuid.uuid4().hex[:8]}"
        alice = RecordingClient(types.SimpleNamespace(http=f"http://127.0.0.1:{p1}"), room,
                                transports=["websocket"]).connect()
        bob = RecordingClient(types.SimpleNamespace(http=f"http://127.0.0.1:{p2}"), room,
                              transports=["polling"]).connect()
        alice.join("alice")
        bob.join("bob")
        alice.wait_for(lambda evs: ("message", join_msg("bob")) in evs, what="bob's join")
        alice.say("sandboxed")
        bob.wait_for(lambda evs: ("message", say_msg("alice", "sandboxed")) in evs,
                     what="alice's say")
        assert requests.get(f"http://127.0.0.1:{p1}/metrics", timeout=5).status_code == 200
        for name, proc in procs.items():
            proc.terminate()
        for name, proc in procs.items():
            assert proc.wait(timeout=15) == 0, (workdir / f"{name}.log").read_text()
        assert alice.disconnected.wait(5) and bob.disconnected.wait(5)
    except BaseException:
        for name in procs:
            sys.stderr.write(f"\n--- {name} ---\n{(workdir / f'{name}.log').read_text()}\n")
        raise
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        for f in logs.values():
            f.close()
    for name in procs:
        text = (workdir / f"{name}.log").read_text()
        for bad in ("Operation not permitted", "not supported", "Fatal error", "error:"):
            assert bad not in text, f"{name}: {bad!r} in its log:\n{text}"
