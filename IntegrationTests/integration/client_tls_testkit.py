"""Helpers for the client-facing TLS tests (HTTPS and WSS on a node's `listen`): a test CA and
certificates, nodes with `[node NAME] tls_cert / tls_key`, and Socket.IO clients that trust
the test CA.

    pki = TestPKI(tmp_path)                       # a test CA (openssl CLI)
    c = ClientTLSCluster(["a1", "a2"], pki)      # each node serves HTTPS with its own cert
    c.start()                                    # /healthz over https (REQUESTS_CA_BUNDLE)
    alice = c.tls_client("a1", "room", transports=["polling"])

The harness's requests calls (/healthz, /metrics) verify the nodes against the test CA through
REQUESTS_CA_BUNDLE, which `trust_test_ca` sets for one test (pytest's monkeypatch).
Used by test_client_tls.py and IntegrationTests/browser/test_page_tls.py.
"""

from __future__ import annotations

import os
import selectors
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
import websocket

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.clients import RecordingClient, in_order_client  # noqa: E402
from harness.cluster import Cluster  # noqa: E402
from harness.node import NodeProcess  # noqa: E402
from harness.process import chatmesh_binary  # noqa: E402

OPENSSL = os.environ.get("OPENSSL_BIN", "openssl")


class TestPKI:
    """A test CA (ECDSA P-256, 2 days) in `dir`, and certificates it signs: `issue(name)`
    writes NAME.pem and NAME-key.pem (0600) with SANs DNS:NAME, DNS:localhost and
    IP:127.0.0.1, for serverAuth. Made with the openssl CLI, as an operator's own PKI would."""

    __test__ = False  # not a test class, whatever its name says

    def __init__(self, dir: Path, name: str = "ca"):
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self.dir / f"{name}.pem"
        self.ca_key = self.dir / f"{name}-key.pem"
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                  "-subj", f"/CN=chatmesh client TLS test CA ({name})",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        os.chmod(self.ca_key, 0o600)
        self.issued: dict[str, tuple[Path, Path]] = {}

    def _run(self, *args) -> None:
        r = subprocess.run([OPENSSL, *map(str, args)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"openssl {' '.join(map(str, args))}: {r.stderr}"

    def issue(self, name: str) -> tuple[Path, Path]:
        """(certificate, key) for `name`, made on first use."""
        if name in self.issued:
            return self.issued[name]
        cert, key = self.dir / f"{name}.pem", self.dir / f"{name}-key.pem"
        csr, ext = self.dir / f"{name}.csr", self.dir / f"{name}.ext"
        ext.write_text(f"subjectAltName=DNS:{name},DNS:localhost,IP:127.0.0.1\n"
                       "basicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n")
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        self._run("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                  "-CAcreateserial", "-days", "2", "-sha256", "-extfile", ext, "-out", cert)
        os.chmod(key, 0o600)
        self.issued[name] = (cert, key)
        return cert, key

    def prepare(self, conf_path: Path) -> None:
        """Nothing to do: certificates are made on first use."""


class GenCertsPKI:
    """The operator's way: `chatmesh gen-certs --config CONF --out DIR` makes the CA and every
    node's pair of CONF at once (`prepare`); `issue(name)` names that node's files."""

    def __init__(self, dir: Path):
        self.dir = Path(dir)
        self.ca = self.dir / "ca.pem"
        self.output = ""

    def prepare(self, conf_path: Path) -> None:
        r = subprocess.run([str(chatmesh_binary()), "gen-certs", "--config", str(conf_path),
                            "--out", str(self.dir)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"gen-certs exited {r.returncode}: {r.stderr}"
        self.output = r.stdout

    def issue(self, name: str) -> tuple[Path, Path]:
        cert, key = self.dir / f"{name}.pem", self.dir / f"{name}-key.pem"
        assert cert.exists() and key.exists(), f"gen-certs wrote no pair for {name}: {self.output}"
        return cert, key


def trust_test_ca(monkeypatch, pki: TestPKI) -> None:
    """Every requests call of this test (the harness's /healthz and /metrics) verifies against
    the test CA."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))


class HTTPSNode(NodeProcess):
    """A `chatmesh serve` whose `listen` serves HTTPS: its URLs say https:// and wss://."""

    @property
    def http(self) -> str:
        return f"https://{self.host}:{self.port}"

    base_url = http

    @property
    def plain_http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self) -> str:
        return f"wss://{self.host}:{self.port}"


class ClientTLSCluster(Cluster):
    """A mesh-mode harness Cluster whose nodes serve HTTPS and WSS on `listen`, each with its
    own certificate from `pki` (a TestPKI or GenCertsPKI: `[node NAME] tls_cert / tls_key`).
    `args`: extra `serve` arguments for every node (e.g. --log-level debug)."""

    def __init__(self, names, pki, args: list[str] | None = None, **kw):
        self.pki = pki
        self._node_tls = False
        super().__init__("mesh", nodes=list(names), prefix="chatmesh-client-tls-", **kw)
        pki.prepare(self.conf_path)   # gen-certs reads the nodes from the conf without TLS
        self._node_tls = True
        self.nodes = {n: HTTPSNode(self.dir, self.conf_path, n, node.port, node.mesh_port,
                                   args=args)
                      for n, node in self.nodes.items()}
        self.conf_path.write_text(self.config_text())

    def config_text(self, secret: str | None = None) -> str:
        text = super().config_text(secret)
        if not self._node_tls:
            return text
        for name in self.names + self.phantoms:
            cert, key = self.pki.issue(name)
            header = f"[node {name}]\n"
            assert text.count(header) == 1, text
            text = text.replace(header, f"{header}tls_cert = {cert}\ntls_key = {key}\n")
        return text

    def tls_client(self, node: str, room: str, transports=("websocket",),
                   connect: bool = True) -> "TLSRecordingClient":
        """A RecordingClient on `node`'s https:// URL that trusts the test CA; closed at
        teardown."""
        return self._track(TLSRecordingClient(self.nodes[node], room, self.pki.ca,
                                              transports=list(transports) if transports else None),
                           connect)


def ca_session(ca: Path) -> requests.Session:
    """A requests session that verifies servers against `ca` only."""
    session = requests.Session()
    session.verify = str(ca)
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set on many hosts, to the system's
    # CAs) win over session.verify; this session's CA must win.
    session.trust_env = False
    return session


class SerializedTLSSocket:
    """An ssl.SSLSocket whose reads and writes never run at once, for python-engineio's sync
    client, which reads a WebSocket on one thread while it writes on another. OpenSSL's SSL
    object is not safe for that, and now and then the CONNECT it wrote was lost and the client
    gave up with "Unexpected connection error" (python-engineio #461, python-socketio #1568).
    The socket underneath is non-blocking, so no call waits for the network holding the lock:
    a read waits for the socket outside it, in slices, and keeps the blocking socket's timeout."""

    SLICE_S = 0.25  # a wait outside the lock; short, so a close from another thread is seen

    def __init__(self, sock: ssl.SSLSocket):
        self._sock = sock
        self._timeout = sock.gettimeout()
        self._lock = threading.Lock()
        sock.settimeout(0)

    def gettimeout(self):
        return self._timeout

    def settimeout(self, timeout) -> None:
        self._timeout = timeout

    def recv(self, bufsize: int) -> bytes:
        return self._locked(lambda: self._sock.recv(bufsize), selectors.EVENT_READ)

    def send(self, data) -> int:
        return self._locked(lambda: self._sock.send(data), selectors.EVENT_WRITE)

    def _locked(self, call, blocked_on: int):
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            with self._lock:
                try:
                    return call()
                except ssl.SSLWantReadError:
                    event = selectors.EVENT_READ
                except ssl.SSLWantWriteError:
                    event = selectors.EVENT_WRITE
                except BlockingIOError:
                    event = blocked_on
            wait = self.SLICE_S
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("timed out")
                wait = min(wait, left)
            with selectors.DefaultSelector() as sel:
                sel.register(self._sock.fileno(), event)
                sel.select(wait)

    def __getattr__(self, name):
        # fileno, shutdown, close, setsockopt, ...: the socket's own.
        return getattr(self._sock, name)


class SerializedTLSWebSocket(websocket.WebSocket):
    """websocket-client's WebSocket over a SerializedTLSSocket once its handshake is done."""

    def connect(self, url, **options):
        super().connect(url, **options)
        if isinstance(self.sock, ssl.SSLSocket):
            self.sock = SerializedTLSSocket(self.sock)


class TLSRecordingClient(RecordingClient):
    """harness.clients.RecordingClient over https:// and wss://: its python-socketio client
    gets a requests session that verifies against `ca`, which python-engineio uses for
    long-polling and hands to websocket-client (ca_certs) for the WebSocket, whose reads and
    writes it serializes (SerializedTLSSocket)."""

    def __init__(self, node, roomid: str | None, ca: Path, transports=None):
        super().__init__(node, roomid, transports=transports)
        self.sio = in_order_client(reconnection=False, logger=False, engineio_logger=False,
                                   http_session=ca_session(ca),
                                   websocket_extra_options={"class_": SerializedTLSWebSocket})
        self.sio.on("*", self._on_any)
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on("disconnect", self._on_disconnect)
