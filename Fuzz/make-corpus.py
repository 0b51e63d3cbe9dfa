#!/usr/bin/env python3
"""Writes the seed corpora of Fuzz/corpus/<target>/ from the unit tests' vectors.

Run it again after adding test vectors, best after `make fuzz` has built the targets: then only
the vectors that add coverage are kept. Crash inputs found by `make fuzz` are not seeds: they go
to Fuzz/crashes/<target>/ and each becomes a unit test. Usage: python3 Fuzz/make-corpus.py
"""
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "Tests"
CORPUS = ROOT / "Fuzz" / "corpus"


def swift_literals(path):
    """The single-line string literals of a Swift file (plain and #"raw"#), unescaped; and the
    multi-line \"\"\" literals, with their indentation removed. Interpolations are skipped, except
    the placeholder(N) helper of the reassembly tests."""
    text = path.read_text()
    found = []
    multiline = r'"""[ \t]*\n(.*?)\n([ \t]*)"""'
    for match in re.finditer(multiline, text, re.S):
        indent = len(match.group(2))
        if "\\(" not in match.group(1):
            found.append(unescape("\n".join(l[indent:] for l in match.group(1).split("\n")) + "\n"))
    text = re.sub(multiline, "", text, flags=re.S)
    for match in re.finditer(r'#"(.*?)"#|"((?:[^"\\\n]|\\.)*)"', text):
        if match.group(1) is not None:
            raw = re.sub(r'\\#\(placeholder\((\d+)\)\)', r'{"_placeholder":true,"num":\1}', match.group(1))
            if "\\#(" in raw:
                continue
            found.append(raw)
        else:
            if "\\(" in match.group(2):
                continue
            found.append(unescape(match.group(2)))
    return [s for s in found if s is not None]


def unescape(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c != "\\" or i + 1 == len(s):
            out.append(c)
            i += 1
            continue
        n = s[i + 1]
        if n == "u" and s[i + 2:i + 3] == "{":
            end = s.index("}", i)
            out.append(chr(int(s[i + 3:end], 16)))
            i = end + 1
            continue
        out.append({"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}.get(n, n))
        i += 2
    try:
        return "".join(out).encode("utf-8").decode("utf-8")
    except UnicodeError:
        return None  # a lone surrogate escape: not a Swift string either


def is_prose(s):
    """An assertion message or a test name rather than a vector."""
    return re.search(r"[A-Za-z]{2,}[,:;]? [a-z]{2,}[,:;]? [a-z]{2,}", s) is not None and "\n" not in s and "=" not in s


def literals(*files):
    seen, result = set(), []
    for name in files:
        for s in swift_literals(TESTS / name):
            if s not in seen and not is_prose(s):
                seen.add(s)
                result.append(s)
    return result


def write(target, seeds):
    """Replaces Fuzz/corpus/<target>/ with the seeds; when the fuzz target is built (make fuzz),
    keeps only the seeds that add coverage (libFuzzer's -merge=1), so the folder stays small."""
    folder = CORPUS / target
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    unique = {}
    for seed in seeds:
        data = seed.encode("utf-8") if isinstance(seed, str) else bytes(seed)
        unique[hashlib.sha1(data).hexdigest()] = data
    binary = ROOT / ".build-fuzz" / "release" / target
    if not binary.exists():
        for digest, data in unique.items():
            (folder / digest).write_bytes(data)
        print(f"{target}: {len(unique)} seeds (not minimized: {binary.relative_to(ROOT)} is not built)")
        return
    with tempfile.TemporaryDirectory() as scratch:
        for digest, data in unique.items():
            (Path(scratch) / digest).write_bytes(data)
        subprocess.run([str(binary), "-merge=1", "-use_counters=0", str(folder), scratch], check=True, capture_output=True,
                       env={**os.environ, "SWIFT_BACKTRACE": "enable=no", "ASAN_OPTIONS": "detect_leaks=0"})
    print(f"{target}: {len(list(folder.iterdir()))} of {len(unique)} seeds add coverage")


def utf8(s):
    return s.encode("utf-8")


# Engine.IO ---------------------------------------------------------------------------------
engine = literals("EngineIOTests/EnginePacketTests.swift", "EngineIOTests/PollingPayloadTests.swift")
write("FuzzEnginePacket", [s for s in engine if len(s) < 300])

polling = [s for s in literals("EngineIOTests/PollingPayloadTests.swift", "EngineIOTests/EnginePacketTests.swift")
           if s and s[0] in "0123456b\x1e" and len(s) < 300]
# First byte: the packet bound (index into [1, 2, 3, 16, 10000]).
write("FuzzPollingPayload", [bytes([4]) + utf8(s) for s in polling] + [bytes([2]) + utf8("6\x1e6\x1e6\x1e6")])

requests = [s for s in literals("EngineIOTests/EngineRequestTests.swift") if s.startswith("/") or "%" in s or "=" in s]
write("FuzzEngineRequest", requests + [utf8("/chat/?EIO=4&transport=polling") + b"\0/chat/"])

# Socket.IO: messages separated by 0xFF; a binary attachment starts with 0x00 -------------------
socket_text = [s for s in literals("SocketIOTests/SocketPacketCodecTests.swift", "SocketIOTests/BinaryReassemblerTests.swift",
                                   "SocketIOTests/SocketIOServerSessionTests.swift")
               if s and s[0] in "0123456789" and len(s) < 400]
socket_seeds = [utf8(s) for s in socket_text]
for s in socket_text:
    m = re.match(r"[56](\d+)-", s)
    if m:  # the header, then as many attachments as it announces
        count = min(int(m.group(1)), 4)
        socket_seeds.append(utf8("0") + b"\xff" + utf8(s) + b"".join(b"\xff\x00" + bytes([i] * (i + 1)) for i in range(count)))
socket_seeds.append(b"0\xff0/admin,\xff2[\"say\",{\"text\":\"hi\"}]\xff2/admin,[\"x\"]\xff1/admin,\xff1")
write("FuzzSocketPacket", socket_seeds)

json_text = [s for s in literals("SocketIOTests/JSONParserTests.swift", "SocketIOTests/JSONWriterTests.swift") if len(s) < 400]
numbers = [0.0, -0.0, 1e21, 1e-7, 1.5e-7, 123.456, 2.0 ** 53, 5e-324, 1.7976931348623157e308, 0.1, -1e300, float("nan")]
json_seeds = []
for i, s in enumerate(json_text):
    # First byte: the nesting limit (byte % 40); then 8 bytes of a double for the number writer.
    json_seeds.append(bytes([32]) + struct.pack(">d", numbers[i % len(numbers)]) + utf8(s))
json_seeds.append(bytes([32]) + struct.pack(">d", 1.0) + b"[" * 33 + b"]" * 33)
write("FuzzJSON", json_seeds)

# Mesh frames --------------------------------------------------------------------------------
def hex_vectors(*files):
    vectors = []
    for name in files:
        text = (TESTS / name).read_text()
        for expr in re.findall(r'hex\(((?:"[0-9A-Fa-f ]*"\s*(?:\+\s*)?)+)\)', text):
            digits = "".join(re.findall(r'"([0-9A-Fa-f ]*)"', expr)).replace(" ", "")
            if len(digits) % 2 == 0:
                vectors.append(bytes.fromhex(digits))
    return vectors


frames = [v for v in hex_vectors("MeshFanoutTests/MeshFrameCodecTests.swift", "MeshFanoutTests/MeshFrameDecoderTests.swift",
                                 "MeshFanoutTests/PeerLinkHandlerTests.swift", "MeshFanoutTests/MeshPubStampedCodecTests.swift",
                                 "MeshFanoutTests/MeshSessionFrameCodecTests.swift",
                                 "MeshFanoutTests/MeshRelayFrameCodecTests.swift")]
nonce = bytes(range(32))
hello = b"\x01\x01" + struct.pack(">H", 2) + b"a1" + struct.pack(">Q", 7) + nonce
auth = b"\x02" + bytes(range(100, 132)) + struct.pack(">QQ", 7, 9)
pub = b"\x06" + struct.pack(">Q", 7) + struct.pack(">H", 2) + b"r1" + b'42["message",{"event":"broadcast_say"}]'
pub_stamped = b"\x0b" + struct.pack(">QQ", 7, 3) + struct.pack(">H", 2) + b"r1" + b'42["message",{"event":"broadcast_say"}]'
def mesh_string(text):
    return struct.pack(">H", len(text.encode())) + text.encode()
session = (b"\x0c" + mesh_string("AbCdEfGhIjKlMnOpQrSt") + mesh_string("sid-0123456789abcdef") + mesh_string("r1")
           + b"\x01" + mesh_string("ann") + mesh_string("a1") + struct.pack(">QQ", 7, (1 << 32) | 2)
           + b"\x01" + struct.pack(">q", 1_700_000_000_000) + mesh_string("1.5-zz.a"))
# The relay frames (13 to 16): a POST with origin and body, a WebSocket without origin, a reply,
# frames of each kind, a close.
relay = [b"\x0d" + struct.pack(">QB", 1, 2) + mesh_string("AbCdEfGhIjKlMnOpQrSt") + mesh_string("https://chat.example")
         + b"4:40",
         b"\x0d" + struct.pack(">QB", 2, 3) + mesh_string("AbCdEfGhIjKlMnOpQrSt") + mesh_string(""),
         b"\x0e" + struct.pack(">QH", 1, 200) + mesh_string("text/plain; charset=UTF-8") + b"2:ok",
         b"\x0e" + struct.pack(">QH", 3, 400) + mesh_string("application/json") + b'{"code":1,"message":"Session ID unknown"}',
         b"\x0f" + struct.pack(">QB", 2, 1) + b"2probe",
         b"\x0f" + struct.pack(">QB", 2, 2) + b"\x04\x01\x02",
         b"\x0f" + struct.pack(">QB", 2, 3) + b"\x81\x063probe",
         b"\x10" + struct.pack(">QH", 2, 4404)]
bodies = [hello, auth, pub, b"\x03" + struct.pack(">I", 2) + b"\x00\x02r1\x00\x03abc", b"\x0a\x00\x03bye",
          pub_stamped, session] + relay
framed = [struct.pack(">I", len(b)) + b for b in bodies]
frames += framed + [b"".join(framed)]
# First byte: limit index (byte % 6, 4 = 4096) and the split point (byte / 8).
write("FuzzMeshFrame", [bytes([4 + 6 * (i % 40)]) + v for i, v in enumerate(frames)])

# The handshake: programs for the adversary (see Fuzz/FuzzMeshHandshake/main.swift).
# Sessions: 0,1 = a1 dialers; 2,3 = a2 acceptors; 4..7 = intruders. Seen frames start with
# the 8 HELLOs (index = session); each send or reply is appended.
resume = bytes([1, 5, 2, 9, 3, 1, 0, 0])
def fwd(target, seen):
    return bytes([0, target, seen])
honest = fwd(0, 2) + fwd(2, 0) + fwd(2, 8) + fwd(0, 9)          # D1<->A1, in order
honest2 = fwd(2, 0) + fwd(0, 2) + fwd(2, 8) + fwd(0, 9)         # acceptor first
redial = fwd(1, 3) + fwd(3, 1) + fwd(3, 8) + fwd(1, 9)          # D2<->A2, the second sessions
replay = honest + fwd(3, 0) + fwd(3, 8)                         # D1's AUTH replayed to A2
wrong = fwd(4, 2) + fwd(2, 4) + fwd(2, 8)                       # wrong-secret a1 to A1
impostor = fwd(0, 5) + fwd(5, 0) + fwd(0, 9)                    # wrong-secret a2 answers D1
stranger = fwd(6, 2) + fwd(2, 6) + fwd(2, 8) + fwd(7, 0) + fwd(0, 7)
flip = fwd(0, 2) + fwd(2, 0) + bytes([1, 2, 8, 20, 1]) + fwd(2, 8)
forged_hello = bytes([3, 0, 10, 2, 0, 1, 1]) + fwd(2, 0) + fwd(2, 8)
forged_auth = fwd(0, 2) + fwd(2, 0) + bytes([4, 2, 10, 0, 1, 7])
raw = bytes([2, 2, len(framed[0])]) + framed[0]
after = honest + fwd(0, 2) + fwd(2, 8) + bytes([4, 0, 10, 0, 0, 0])
handshake_programs = [honest, honest2, redial, replay, wrong, impostor, stranger, flip, forged_hello, forged_auth, raw, after]
write("FuzzMeshHandshake", [resume + p for p in handshake_programs])

# RESP ---------------------------------------------------------------------------------------
resp = [s for s in literals("RedisFanoutTests/RESPDecoderTests.swift", "RedisFanoutTests/RESPDecoderErrorTests.swift",
                            "RedisFanoutTests/RESPStreamTests.swift", "RedisFanoutTests/RESPEncoderTests.swift")
        if s and s[0] in "+-:$*?!" and len(s) < 400]
# First byte: the decoder (byte % 4: tight, zero, middle, default limits) and the split point.
write("FuzzRESP", [bytes([(i * 4 + (i % 4)) % 256]) + utf8(s) for i, s in enumerate(resp)])

# cluster.conf ---------------------------------------------------------------------------------
one_node = "[node a1]\nlisten = 127.0.0.1:6001\n\n"
conf_files = [f"ClusterConfigTests/{p.name}" for p in sorted((TESTS / "ClusterConfigTests").glob("*.swift"))]
configs = []
for s in literals(*conf_files):
    if "[" in s and ("=" in s or "]" in s) and len(s) < 3000:
        configs.append(s if "[node" in s else s + ("" if s.endswith("\n") else "\n") + one_node)
for s in literals("ClusterConfigTests/HostPortTests.swift"):
    if ":" in s and len(s) < 80 and " " not in s:
        configs.append(f"[cluster]\nsecret = k\n[node a1]\nlisten = {s}\nmesh = {s}\n")
for s in literals("ClusterConfigTests/RedisURLTests.swift"):
    if s.startswith("redis") and len(s) < 120:
        configs.append(f"[cluster]\nfanout = redis\n[redis]\nurl = {s}\n" + one_node)
configs.append((ROOT / "cluster.conf").read_text())
configs.append(b"[node a1]\nlisten = 127.0.0.1:6001\n# caf\xe9\n")  # not UTF-8: goes through ClusterConfig.load
write("FuzzClusterConfig", configs)

# Client WebSocket frames ------------------------------------------------------------------------
def ws_frame(opcode, payload, fin=True, rsv=0, key=b"\x37\xfa\x21\x3d", length=None):
    """A frame as WebSocketFrameReaderTests.clientFrame writes it (key=None: unmasked);
    `length` overrides the header's length, for frames cut short or lying about it."""
    n = len(payload) if length is None else length
    mask = 0x80 if key else 0
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    if n < 126:
        head += bytes([mask | n])
    elif n <= 0xFFFF:
        head += bytes([mask | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mask | 127]) + struct.pack(">Q", n)
    if not key:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


hello = b"Hello"
websocket = [
    # RFC 6455 §5.7: unmasked and masked "Hello", a fragmented text message, an unmasked ping
    # and a masked pong, 256 bytes and 64 KiB (cut short) of unmasked binary.
    bytes.fromhex("810548656c6c6f"),
    bytes.fromhex("818537fa213d7f9f4d5158"),
    bytes.fromhex("010348656c") + bytes.fromhex("80026c6f"),
    bytes.fromhex("890548656c6c6f") + bytes.fromhex("8a8537fa213d7f9f4d5158"),
    bytes.fromhex("827e0100") + bytes(range(256)),
    bytes.fromhex("827f0000000000010000") + bytes(range(100)),
    # The unit tests: a text frame and a ping, an unmasked frame and RSV bits, the 70000-byte
    # header over a 65536 limit, a length with the top bit, a fragmented and a long control frame.
    ws_frame(1, '42["say",{"text":"héllo wörld"}]'.encode()) + ws_frame(9, b"\x01\x02"),
    ws_frame(1, b"a", key=None) + ws_frame(1, b"b", rsv=4),
    ws_frame(1, b"", length=70_000),
    bytes([0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4]),
    ws_frame(9, b"\x01", fin=False),
    ws_frame(8, bytes(126)),
    # What Engine.IO clients send: the probe, a message in a text frame and its continuation,
    # a 125-byte ping and a close with code 1000.
    ws_frame(1, b"2probe") + ws_frame(1, b"5"),
    ws_frame(1, b'42["say",', fin=False) + ws_frame(9, b"") + ws_frame(0, b'{"text":"hi"}]'),
    ws_frame(9, bytes(range(125))) + ws_frame(8, b"\x03\xe8bye"),
]
# First byte: maxFrameSize (byte % 8 indexes [0, 1, 125, 126, 4000, 65535, 65536, 1 MiB]; 4000
# or 65536 here) and the skew (byte >> 3); then 2 split points.
write("FuzzWebSocketFrame", [bytes([4 + 8 * (i % 2) if i != 8 else 6, 2, 40 + 17 * i % 200, 128 + 13 * i % 120]) + v
                             for i, v in enumerate(websocket)])
