"""The real binary's `gen-secret`, `gen-certs` and `check-config` / `serve` file checks.

Every refusal names `cluster.conf:LINE:` of the key at fault, as an operator's editor would
jump to it; the certificates gen-certs writes pass `openssl verify` and carry what the design
says (SAN DNS:NAME plus the node's IPs, serverAuth + clientAuth, P-256, SHA-256).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from chatmesh_testkit import chatmesh_binary

STRONG = "4be0c1d9a3f27e58b6c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2"

# Three nodes on three (documentation) hosts: the weak-secret rule applies. Line 2 is the
# secret; gen-certs' [mesh] lines are appended after line 11.
THREE_HOSTS = """[cluster]
{secret_line}
[node a1]
listen = 192.0.2.1:6001
mesh = 192.0.2.1:7001
[node a2]
listen = 192.0.2.2:6001
mesh = 192.0.2.2:7001
[node a3]
listen = 192.0.2.3:6001
mesh = 192.0.2.3:7001
"""
TLS_LINE = {"tls": 13, "tls_ca": 14, "tls_cert": 15, "tls_key": 16}


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([str(chatmesh_binary()), *args], capture_output=True, text=True,
                          timeout=timeout)


def check(conf: Path, *extra: str) -> subprocess.CompletedProcess:
    return run("check-config", *extra, str(conf))


def write_conf(path: Path, secret_line: str = f"secret = {STRONG}", tail: str = "") -> Path:
    path.write_text(THREE_HOSTS.format(secret_line=secret_line) + tail)
    return path


def gen_certs(conf: Path, out: Path) -> str:
    r = run("gen-certs", "--config", str(conf), "--out", str(out))
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def tls_cluster(tmp_path):
    """cluster.conf (strong secret) + gen-certs' files beside it, its [mesh] lines pasted."""
    conf = write_conf(tmp_path / "cluster.conf")
    lines = gen_certs(conf, tmp_path)
    conf.write_text(conf.read_text() + lines)
    return conf


# --- gen-secret --------------------------------------------------------------------------

def test_gen_secret_prints_256_random_bits_as_hex():
    first, second = run("gen-secret"), run("gen-secret")
    assert first.returncode == 0 and second.returncode == 0
    assert re.fullmatch(r"[0-9a-f]{64}\n", first.stdout), first.stdout
    assert first.stdout != second.stdout


# --- weak secrets ------------------------------------------------------------------------

@pytest.mark.parametrize("secret, why", [
    ("change-me", "the secret is the placeholder 'change-me'"),
    ("s3cret", "the secret is 6 characters; at least 32 are needed"),
    ("x" * 31, "the secret is 31 characters; at least 32 are needed"),
])
def test_weak_secret_across_hosts_is_refused_at_its_line(tmp_path, secret, why):
    conf = write_conf(tmp_path / "cluster.conf", f"secret = {secret}")
    r = check(conf)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{conf}:2: secret: {why}"), r.stderr
    assert "chatmesh gen-secret" in r.stderr


def test_good_secret_across_hosts_is_accepted(tmp_path):
    r = check(write_conf(tmp_path / "cluster.conf", f"secret = {run('gen-secret').stdout.strip()}"))
    assert r.returncode == 0, r.stderr
    assert "secret: set" in r.stdout and STRONG not in r.stdout


def test_loopback_mesh_is_exempt_from_the_weak_secret_rule(tmp_path):
    conf = tmp_path / "cluster.conf"
    conf.write_text("[cluster]\nsecret = change-me\n[node a1]\nlisten = 127.0.0.1:6001\n"
                    "mesh = 127.0.0.1:7001\n[node a2]\nlisten = 127.0.0.1:6002\nmesh = 127.0.0.1:7002\n")
    assert check(conf).returncode == 0


def test_shipped_cluster_conf_passes_and_its_placeholder_fails_across_hosts(tmp_path):
    shipped = Path(__file__).resolve().parents[2] / "cluster.conf"
    assert check(shipped).returncode == 0
    moved = tmp_path / "cluster.conf"
    moved.write_text(shipped.read_text().replace("127.0.0.1:7002", "192.0.2.2:7002"))
    r = check(moved)
    assert r.returncode == 1 and re.match(rf"{re.escape(str(moved))}:\d+: secret: the secret is the placeholder", r.stderr), r.stderr


# --- secret_file -------------------------------------------------------------------------

def test_secret_file_relative_to_the_config_and_private(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(run("gen-secret").stdout)
    secret.chmod(0o600)
    conf = write_conf(tmp_path / "cluster.conf", "secret_file = secret")
    r = subprocess.run([str(chatmesh_binary()), "check-config", str(conf)], capture_output=True,
                       text=True, timeout=30, cwd="/")
    assert r.returncode == 0, r.stderr
    assert f"secret_file: {secret}" in r.stdout


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604])
def test_group_or_other_readable_secret_file_is_refused_at_its_line(tmp_path, mode):
    secret = tmp_path / "secret"
    secret.write_text(STRONG + "\n")
    secret.chmod(mode)
    conf = write_conf(tmp_path / "cluster.conf", f"secret_file = {secret}")
    r = check(conf)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{conf}:2: secret_file {secret}: is readable by group or others "
                               f"(mode 0{mode:o})"), r.stderr


# --- gen-certs ---------------------------------------------------------------------------

def test_gen_certs_writes_a_ca_and_node_pairs_that_openssl_verifies(tmp_path):
    conf = write_conf(tmp_path / "cluster.conf")
    out = tmp_path / "certs"
    lines = gen_certs(conf, out)
    assert lines.splitlines() == ["[mesh]", "tls = on", f"tls_ca = {out}/ca.pem",
                                  f"tls_cert = {out}/%n.pem", f"tls_key = {out}/%n-key.pem"]
    for name in ["ca", "a1", "a2", "a3"]:
        assert stat.S_IMODE((out / f"{name}-key.pem").stat().st_mode) == 0o600
        assert stat.S_IMODE((out / f"{name}.pem").stat().st_mode) == 0o644
    if shutil.which("openssl") is None:
        pytest.skip("no openssl CLI")
    v = subprocess.run(["openssl", "verify", "-CAfile", str(out / "ca.pem"),
                        *(str(out / f"a{i}.pem") for i in (1, 2, 3))], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    text = subprocess.run(["openssl", "x509", "-in", str(out / "a2.pem"), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:a2, IP Address:192.0.2.2" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert "ecdsa-with-SHA256" in text and "prime256v1" in text
    assert "CA:FALSE" in text
    ca = subprocess.run(["openssl", "x509", "-in", str(out / "ca.pem"), "-noout", "-text"],
                        capture_output=True, text=True, check=True).stdout
    assert "CA:TRUE" in ca and "Certificate Sign" in ca


def test_gen_certs_beside_the_config_prints_bare_names_and_never_overwrites(tmp_path):
    conf = write_conf(tmp_path / "cluster.conf")
    assert "tls_key = %n-key.pem" in gen_certs(conf, tmp_path)
    again = run("gen-certs", "--config", str(conf), "--out", str(tmp_path))
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr


def test_check_config_accepts_gen_certs_output(tls_cluster):
    r = check(tls_cluster)
    assert r.returncode == 0, r.stderr
    d = tls_cluster.parent  # the bare names gen-certs printed, resolved beside cluster.conf
    lines = r.stdout.splitlines()
    tls = lines.index("  tls = on")   # the [mesh] block's TLS lines, whatever sections follow it
    assert lines[tls:tls + 4] == ["  tls = on", f"  tls_ca = {d}/ca.pem", f"  tls_cert = {d}/%n.pem",
                                  f"  tls_key = {d}/%n-key.pem"]


# --- TLS file checks: each at the line of the key that names the file ---------------------

def refused(conf: Path, key: str, path: Path, *extra: str) -> str:
    r = check(conf, *extra)
    assert r.returncode == 1, r.stdout
    prefix = f"{conf}:{TLS_LINE[key]}: {key} {path}: "
    assert prefix in r.stderr, r.stderr
    return r.stderr


def test_unreadable_ca_is_refused(tls_cluster):
    (tls_cluster.parent / "ca.pem").unlink()
    assert "cannot read: No such file or directory" in refused(tls_cluster, "tls_ca", tls_cluster.parent / "ca.pem")


def test_key_in_place_of_a_certificate_is_not_pem_of_the_right_kind(tls_cluster):
    d = tls_cluster.parent
    shutil.copy(d / "a1-key.pem", d / "a1.pem")
    assert "not a PEM certificate (found 'PRIVATE KEY')" in refused(tls_cluster, "tls_cert", d / "a1.pem")


def test_key_that_does_not_match_its_certificate_is_refused(tls_cluster):
    d = tls_cluster.parent
    shutil.copy(d / "a2-key.pem", d / "a1-key.pem")
    assert "does not match the certificate" in refused(tls_cluster, "tls_key", d / "a1-key.pem")


def test_certificate_from_another_ca_is_refused(tls_cluster, tmp_path):
    d = tls_cluster.parent
    other = tmp_path / "other"
    gen_certs(tls_cluster, other)
    for f in ("a3.pem", "a3-key.pem"):
        (d / f).unlink()
        shutil.copy(other / f, d / f)
    assert "is not signed by the cluster CA" in refused(tls_cluster, "tls_cert", d / "a3.pem")


def test_certificate_naming_another_node_is_refused(tls_cluster):
    d = tls_cluster.parent
    for f in ("a2.pem", "a2-key.pem"):
        (d / f).unlink()
    shutil.copy(d / "a1.pem", d / "a2.pem")
    shutil.copy(d / "a1-key.pem", d / "a2-key.pem")
    assert "does not name node 'a2'" in refused(tls_cluster, "tls_cert", d / "a2.pem")


def test_group_readable_key_is_refused(tls_cluster):
    key = tls_cluster.parent / "a3-key.pem"
    key.chmod(0o640)
    assert "is readable by group or others (mode 0640)" in refused(tls_cluster, "tls_key", key)


def test_node_option_checks_only_that_nodes_files(tls_cluster):
    d = tls_cluster.parent
    (d / "a2-key.pem").unlink()  # a2's key lives on its own host
    assert check(tls_cluster, "--node", "a1").returncode == 0
    refused(tls_cluster, "tls_key", d / "a2-key.pem")


def test_serve_refuses_to_start_with_the_same_message(tls_cluster):
    key = tls_cluster.parent / "a1-key.pem"
    key.chmod(0o644)
    r = run("serve", "--config", str(tls_cluster), "--node", "a1", timeout=30)
    assert r.returncode != 0
    assert f"{tls_cluster}:{TLS_LINE['tls_key']}: tls_key {key}: is readable by group or others" in r.stderr, r.stderr


# --- systemd: the private files reach the node as credentials -----------------------------

def test_install_systemd_passes_files_beside_the_config_as_credentials(tmp_path):
    """secret_file and the TLS files named by bare file name beside cluster.conf become
    LoadCredential= lines of each node's drop-in (the unit reads cluster.conf from its
    credentials directory, where those names resolve), and the units still verify."""
    from systemd_testkit import UNIT_DIR, install_dropins, systemd_analyze, tool, verify_tree
    tool("systemd-analyze")
    staged = tmp_path / "staged"
    etc = staged / "etc/chatmesh"
    etc.mkdir(parents=True)
    secret = etc / "secret"
    secret.write_text(run("gen-secret").stdout)
    secret.chmod(0o600)
    conf = etc / "cluster.conf"
    conf.write_text("[cluster]\nsecret_file = secret\n[node a1]\nlisten = 127.0.0.1:6101\n"
                    "mesh = 127.0.0.1:7101\n[node a2]\nlisten = 127.0.0.1:6102\nmesh = 127.0.0.1:7102\n")
    conf.write_text(conf.read_text() + gen_certs(conf, etc))
    r = install_dropins(conf, staged, "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    node_conf = (staged / "etc/systemd/system/chatmesh@a2.service.d/node.conf").read_text()
    credentials = [ln for ln in node_conf.splitlines() if ln.startswith("LoadCredential=")]
    assert credentials == ["LoadCredential=a2-key.pem:/etc/chatmesh/a2-key.pem",
                           "LoadCredential=a2.pem:/etc/chatmesh/a2.pem",
                           "LoadCredential=ca.pem:/etc/chatmesh/ca.pem",
                           "LoadCredential=secret:/etc/chatmesh/secret"], node_conf
    d = verify_tree(UNIT_DIR, staged / "etc/systemd/system", tmp_path / "units")
    v = systemd_analyze("verify", "--man=no", str(d / "chatmesh@a2.service"), cwd=tmp_path)
    assert v.returncode == 0 and v.stderr.strip() == "", v.stdout + v.stderr
    # A node whose key is group-readable is refused before anything is written.
    (etc / "a1-key.pem").chmod(0o644)
    again = install_dropins(conf, tmp_path / "staged-again", "--all")
    assert again.returncode == 1 and "tls_key" in again.stderr and "nothing written" in again.stderr, again.stderr
    assert not (tmp_path / "staged-again/etc/systemd").exists()
