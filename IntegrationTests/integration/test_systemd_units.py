"""The unit files of deploy/systemd/, scripts/install-systemd.sh and `make install`.

`systemd-analyze verify` loads the templates as the instances an operator enables (with the
drop-ins the install script writes beside them) and must exit 0 without a single warning:
it exits 0 on unknown keys too, so its output is checked as well.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from chatmesh_testkit import REPO, chatmesh_binary
from systemd_testkit import (UNIT_DIR, clean_env, install_dropins, systemd_analyze, tool,
                             verify_tree)

TEMPLATES = ["chatmesh@.service", "chatmesh@.socket", "chatmesh-mesh@.socket", "chatmesh.target"]

# 203.0.113.0/24 (TEST-NET-3) is documentation space: never an address of this host.
REMOTE = "203.0.113.10"

SAMPLE = f"""# a sample cluster: two nodes here, one elsewhere, one without a mesh address
[cluster]
fanout = mesh
secret = 0f3a9c5e1b7d2f8a4c6e0b9d3f5a7c1e  # not loopback everywhere, so a strong secret is required
drain_timeout = 30000       # ms

[node a1]                   # on loopback
listen = 127.0.0.1:6101
mesh = 127.0.0.1:7101

[node b-2]
listen={REMOTE}:6102        # another host
mesh = {REMOTE}:7102

[node c3]
listen = [::1]:6103
mesh = [0:0::1]:7103        # not canonical on purpose

[node d.4]
listen = 0.0.0.0:6104
mesh = 0.0.0.0:7104
"""

SOLO = """[cluster]
fanout = mesh
[node solo]
listen = 127.0.0.1:6201
"""


def _remote_is_not_local():
    ip = shutil.which("ip")
    if ip:
        out = subprocess.run([ip, "-o", "addr", "show"], capture_output=True, text=True).stdout
        if f" {REMOTE}/" in out:
            pytest.skip(f"{REMOTE} is configured on this host")


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _settings(text: str) -> list[str]:
    """The non-comment, non-blank lines of a unit file or drop-in."""
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_templates_are_all_there():
    assert sorted(p.name for p in UNIT_DIR.iterdir()) == sorted(TEMPLATES)


def test_service_template_settings():
    text = (UNIT_DIR / "chatmesh@.service").read_text()
    settings = set(_settings(text))
    for line in ["Type=notify", "NotifyAccess=main", "WatchdogSec=10", "Restart=on-failure",
                 "LimitNOFILE=65536", "DynamicUser=yes", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes", "NoNewPrivileges=yes",
                 "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
                 "ProtectControlGroups=yes", "ProtectClock=yes", "ProtectHostname=yes",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "RestrictNamespaces=yes",
                 "RestrictRealtime=yes", "LockPersonality=yes", "MemoryDenyWriteExecute=yes",
                 "CapabilityBoundingSet=", "SystemCallArchitectures=native",
                 "SystemCallFilter=@system-service", "UMask=0077", "PartOf=chatmesh.target",
                 "Sockets=chatmesh@%i.socket", "WantedBy=chatmesh.target"]:
        assert line in settings, line
    exec_start = next(ln for ln in settings if ln.startswith("ExecStart="))
    assert exec_start.startswith("ExecStart=/usr/local/bin/chatmesh serve --config ")
    assert exec_start.endswith(" --node %i")
    stop = int(next(ln for ln in settings if ln.startswith("TimeoutStopSec=")).split("=")[1])
    assert stop > 10, "TimeoutStopSec must exceed the default drain_timeout (10 s)"
    for name, fdname in (("chatmesh@.socket", "client"), ("chatmesh-mesh@.socket", "mesh")):
        s = _settings((UNIT_DIR / name).read_text())
        assert f"FileDescriptorName={fdname}" in s
        assert "Service=chatmesh@%i.service" in s
        assert not any(ln.startswith("ListenStream") for ln in s), \
            "the templates carry no address; install-systemd.sh writes it"


def test_install_script_writes_dropins_for_this_host(tmp_path):
    _remote_is_not_local()
    conf = tmp_path / "cluster.conf"
    conf.write_text(SAMPLE)
    dest = tmp_path / "root"
    r = install_dropins(conf, dest)
    assert r.returncode == 0, r.stdout + r.stderr
    unitdir = dest / "etc/systemd/system"
    files = _files(unitdir)
    listen = {path: [ln for ln in _settings(text) if ln.startswith("ListenStream")]
              for path, text in files.items() if path.endswith("listen.conf")}
    assert listen == {
        "chatmesh@a1.socket.d/listen.conf": ["ListenStream=", "ListenStream=127.0.0.1:6101"],
        "chatmesh-mesh@a1.socket.d/listen.conf": ["ListenStream=", "ListenStream=127.0.0.1:7101"],
        "chatmesh@c3.socket.d/listen.conf": ["ListenStream=", "ListenStream=[::1]:6103"],
        "chatmesh-mesh@c3.socket.d/listen.conf": ["ListenStream=", "ListenStream=[::1]:7103"],
        "chatmesh@d.4.socket.d/listen.conf": ["ListenStream=", "ListenStream=0.0.0.0:6104"],
        "chatmesh-mesh@d.4.socket.d/listen.conf": ["ListenStream=", "ListenStream=0.0.0.0:7104"],
    }, files.keys()
    for path in listen:
        first = files[path].splitlines()[0]
        assert first.startswith("# written by chatmesh scripts/install-systemd.sh"), first
    # the service drop-in adds the mesh socket and a stop timeout above drain_timeout (30 s)
    node = _settings(files["chatmesh@a1.service.d/node.conf"])
    assert node == ["[Unit]", "Requires=chatmesh-mesh@a1.socket", "After=chatmesh-mesh@a1.socket",
                    "[Service]", "Sockets=chatmesh-mesh@a1.socket", "TimeoutStopSec=40"], node
    assert not any("b-2" in p for p in files), "b-2 listens on another host"
    assert "node b-2: skipped" in r.stdout
    # the commands an operator types next
    assert "systemctl enable --now chatmesh@a1.socket chatmesh-mesh@a1.socket " \
           "chatmesh@a1.service" in r.stdout
    for path in unitdir.rglob("*.conf"):
        assert path.stat().st_mode & 0o777 == 0o644


def test_install_script_all_nodes_and_stale_cleanup(tmp_path):
    conf = tmp_path / "cluster.conf"
    conf.write_text(SAMPLE)
    dest = tmp_path / "root"
    r = install_dropins(conf, dest, "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    unitdir = dest / "etc/systemd/system"
    text = (unitdir / "chatmesh@b-2.socket.d/listen.conf").read_text()
    assert f"ListenStream={REMOTE}:6102" in _settings(text)
    text = (unitdir / "chatmesh-mesh@b-2.socket.d/listen.conf").read_text()
    assert f"ListenStream={REMOTE}:7102" in _settings(text)
    # an operator's own drop-in is never touched
    own = unitdir / "chatmesh@b-2.socket.d/local.conf"
    own.write_text("[Socket]\nBacklog=128\n")
    # b-2 leaves the config: its generated files go, the operator's file stays
    conf.write_text(SAMPLE.replace("[node b-2]", "[node zz]").replace(REMOTE, "198.51.100.1"))
    r = install_dropins(conf, dest, "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    files = _files(unitdir)
    assert sorted(p for p in files if "b-2" in p) == ["chatmesh@b-2.socket.d/local.conf"]
    assert "chatmesh@zz.socket.d/listen.conf" in files
    assert "removed " in r.stdout


def test_install_script_node_without_mesh(tmp_path):
    conf = tmp_path / "cluster.conf"
    conf.write_text(SOLO)
    r = install_dropins(conf, tmp_path / "root")
    assert r.returncode == 0, r.stdout + r.stderr
    files = _files(tmp_path / "root/etc/systemd/system")
    assert sorted(files) == ["chatmesh@solo.service.d/node.conf",
                             "chatmesh@solo.socket.d/listen.conf"]
    assert _settings(files["chatmesh@solo.service.d/node.conf"]) == ["[Service]",
                                                                     "TimeoutStopSec=20"]
    assert "systemctl enable --now chatmesh@solo.socket chatmesh@solo.service" in r.stdout


def test_install_script_refuses_a_bad_config(tmp_path):
    conf = tmp_path / "cluster.conf"
    conf.write_text("[cluster]\nfanout = mesh\n[node a1]\nlisten = 127.0.0.1:99999\n")
    dest = tmp_path / "root"
    r = install_dropins(conf, dest)
    assert r.returncode != 0
    assert f"{conf}:4:" in r.stderr, r.stderr  # check-config's file:line message
    assert not dest.exists(), "nothing is written for an invalid config"


def _verify(units: list[Path], cwd: Path) -> subprocess.CompletedProcess:
    return systemd_analyze("verify", "--man=no", *map(str, units), cwd=cwd)


def test_units_verify_as_instances(tmp_path):
    """systemd-analyze verify on every unit of deploy/systemd/, as the instances a1 (mesh)
    and solo (no mesh address) with the drop-ins install-systemd.sh writes, exits 0 and
    prints nothing."""
    tool("systemd-analyze")
    for name, text in (("a1", SAMPLE), ("solo", SOLO)):
        conf = tmp_path / f"{name}.conf"
        conf.write_text(text)
        staged = tmp_path / f"staged-{name}"
        r = install_dropins(conf, staged)
        assert r.returncode == 0, r.stdout + r.stderr
        d = verify_tree(UNIT_DIR, staged / "etc/systemd/system", tmp_path / f"units-{name}")
        units = [d / f"chatmesh@{name}.service", d / f"chatmesh@{name}.socket",
                 d / "chatmesh.target"]
        if name == "a1":
            units.append(d / f"chatmesh-mesh@{name}.socket")
        r = _verify(units, tmp_path)
        assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", \
            f"systemd-analyze verify {name} (exit {r.returncode}):\n{r.stdout}\n{r.stderr}"


def test_verify_would_catch_mistakes(tmp_path):
    """The check above is not vacuous: without the drop-ins a socket has no address, and a
    misspelt key is reported (though verify still exits 0 for it)."""
    d = verify_tree(UNIT_DIR, None, tmp_path / "units")
    r = _verify([d / "chatmesh@a1.socket"], tmp_path)
    assert r.returncode != 0 and "no Listen setting" in r.stderr, r.stderr
    service = d / "chatmesh@.service"
    service.write_text(service.read_text().replace("WatchdogSec=", "WatchDogSec="))
    r = _verify([d / "chatmesh@a1.service"], tmp_path)
    assert "Unknown key" in r.stderr and "WatchDogSec" in r.stderr, r.stderr


def test_security_exposure_is_low(tmp_path):
    """`systemd-analyze security --offline` rates the sandbox (0 = locked down, 10 = none);
    systemd calls anything below 2 "OK"."""
    conf = tmp_path / "cluster.conf"
    conf.write_text(SAMPLE)
    staged = tmp_path / "staged"
    assert install_dropins(conf, staged).returncode == 0
    d = verify_tree(UNIT_DIR, staged / "etc/systemd/system", tmp_path / "units")
    r = systemd_analyze("security", "--offline=yes", "--no-pager", str(d / "chatmesh@a1.service"),
                        cwd=tmp_path)
    m = re.search(r"Overall exposure level for chatmesh@a1\.service: (\d+\.\d+) (\w+)", r.stdout)
    assert m, r.stdout + r.stderr
    print(f"systemd-analyze security: exposure {m.group(1)} {m.group(2)}")
    assert float(m.group(1)) < 2.0, r.stdout


def test_make_install_into_destdir(tmp_path):
    """make install DESTDIR=... PREFIX=/usr: binary, units (ExecStart under PREFIX),
    a root-only cluster.conf that a second install keeps, the drop-ins; and the staged units
    verify."""
    dest = tmp_path / "root"
    make = shutil.which("make") or pytest.skip("make not installed")
    cmd = [make, "-s", "-C", str(REPO), "install", f"DESTDIR={dest}", "PREFIX=/usr",
           f"INSTALL_BIN={chatmesh_binary()}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=clean_env())
    assert r.returncode == 0, r.stdout + r.stderr
    binary = dest / "usr/bin/chatmesh"
    assert binary.is_file() and os.access(binary, os.X_OK)
    unitdir = dest / "etc/systemd/system"
    for t in TEMPLATES:
        assert (unitdir / t).is_file(), t
    service = (unitdir / "chatmesh@.service").read_text()
    assert "ExecStart=/usr/bin/chatmesh serve " in service
    conf = dest / "etc/chatmesh/cluster.conf"
    assert conf.read_text() == (REPO / "cluster.conf").read_text()
    assert conf.stat().st_mode & 0o777 == 0o600, "cluster.conf holds the mesh secret"
    # the shipped cluster.conf has a1 and a2 on loopback: both get their sockets
    for n in ("a1", "a2"):
        assert (unitdir / f"chatmesh@{n}.socket.d/listen.conf").is_file()
        assert (unitdir / f"chatmesh-mesh@{n}.socket.d/listen.conf").is_file()
    assert "systemctl enable --now chatmesh@a1.socket chatmesh-mesh@a1.socket " \
           "chatmesh@a1.service" in r.stdout
    # an edited config survives a second install
    conf.write_text(conf.read_text() + "\n# edited by the operator\n")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=clean_env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert conf.read_text().endswith("# edited by the operator\n")
    assert "keeping the existing" in r.stdout
    # what was staged verifies (ExecStart pointed at an existing binary)
    d = tmp_path / "verify"
    d.mkdir()
    for p in unitdir.iterdir():
        if p.is_file():
            (d / p.name).write_text(p.read_text().replace("/usr/bin/chatmesh", str(binary)))
        else:
            shutil.copytree(p, d / p.name)
    r = _verify([d / "chatmesh@a2.service", d / "chatmesh@a2.socket",
                 d / "chatmesh-mesh@a2.socket", d / "chatmesh.target"], tmp_path)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr
