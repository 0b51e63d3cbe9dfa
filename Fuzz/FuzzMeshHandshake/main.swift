import FuzzSupport
import MeshFanout
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

// The mesh handshake state machine (`MeshHandshake.receive`), for both roles, under an
// adversary that controls the network. Four honest sessions hold the secret: two dials of a1
// to a2 and two accepts at a2 (each with its own nonce, as on a redial). Four intruders run the
// same code: a1 and a2 with a wrong secret, a3 (right secret, but the wrong node for this
// link) as dialer and as acceptor. The input is a program for the adversary: deliver any frame
// seen so far to any session, flip a byte of one, inject raw bytes, or forge a HELLO or an
// AUTH from fields it knows. Every frame crosses the real codec (`MeshFrameDecoder` with the
// handshake frame limit), as on a link.
//
// Promises, checked on each honest session: a session is established only by an AUTH that its
// genuine peer computed for this very session, i.e. its name and nonce (no forgery, no replay
// across sessions), and then it reports that peer's true name, epoch and resume point; the
// acceptor sends its own AUTH only once established, the dialer only in answer to a HELLO;
// after a rejection every frame is rejected, and after establishment every handshake frame is.

let secret = "fuzz: correct horse battery staple"
let cluster: Set<String> = ["a1", "a2", "a3"]
let handshakeFrameLimit = 4096
/// FUZZ_TRACE=1 prints every delivery, for reading a crash input: .build-fuzz/release/FuzzMeshHandshake FILE
let trace = getenv("FUZZ_TRACE") != nil

struct Session {
    enum Status { case active, established, failed }

    var handshake: MeshHandshake
    let honest: Bool
    let resume: (epoch: UInt64, sequence: UInt64)
    var status = Status.active
    /// The HELLO this session accepted.
    var peerHello: MeshHello?
    /// Every AUTH this session sent, with the HELLO it answered.
    var sentAuths: [(frame: MeshFrame, answering: MeshHello)] = []

    init(_ name: String, epoch: UInt64, role: MeshHandshake.Role, honest: Bool, secret: String,
         nonce: UInt8, resume: (UInt64, UInt64)) {
        handshake = MeshHandshake(localName: name, localEpoch: epoch, secret: secret, role: role,
                                  knownPeers: cluster.subtracting([name]),
                                  nonce: [UInt8](repeating: nonce, count: MeshHello.nonceLength))
        self.honest = honest
        self.resume = resume
    }

    var isDialer: Bool { if case .dialer = handshake.role { return true } else { return false } }
}


/// Frames out of `bytes` through the link's decoder (which closes the link on an error).
func decode(_ bytes: [UInt8]) -> [MeshFrame] {
    var buffer = ByteBuffer(bytes: bytes)
    let decoder = MeshFrameDecoder(maxFrameLength: handshakeFrameLimit)
    var frames: [MeshFrame] = []
    while let frame = try? decoder.next(from: &buffer) { frames.append(frame) }
    return frames
}

func deliver(_ frame: MeshFrame, to index: Int, _ sessions: inout [Session]) -> MeshHandshake.Output {
    let resume = sessions[index].resume
    let output = sessions[index].handshake.receive(frame) { _ in resume }
    if trace { print("\(frame.type) -> session \(index) (\(sessions[index].handshake.localName)): \(output)") }
    var session = sessions[index]
    defer { sessions[index] = session }
    guard session.honest else { return output }
    let name = session.handshake.localName

    switch session.status {
    case .failed:
        expect(output == .reject("link already failed"), "\(name) answered \(output) after failing")
        return output
    case .established:
        guard case .reject = output else {
            expect(false, "\(name) accepted \(frame.type) after establishment: \(output)")
            return output
        }
        session.status = .failed
        return output
    case .active:
        break
    }

    switch output {
    case .send(let sent):
        guard case .hello(let hello) = frame, case .auth = sent else {
            expect(false, "\(name) sent \(sent.type) in answer to \(frame.type)")
            return output
        }
        expect(session.isDialer && session.peerHello == nil, "\(name) sent AUTH as acceptor or twice")
        session.peerHello = hello
        session.sentAuths.append((sent, hello))
    case .wait:
        guard case .hello(let hello) = frame else {
            expect(false, "\(name) waits after \(frame.type)")
            return output
        }
        expect(!session.isDialer && session.peerHello == nil, "\(name) waited as dialer or after a second HELLO")
        session.peerHello = hello
    case .established(let established, let reply):
        session.status = .established
        guard case .auth = frame, let hello = session.peerHello else {
            expect(false, "\(name) established by \(frame.type) without a HELLO")
            return output
        }
        // Only one honest session can have made this AUTH: the one whose HELLO this session
        // accepted (name, nonce and epoch: the proof covers the sender's), answering a HELLO
        // with this session's name and nonce. The proof does not cover the epoch (or version)
        // in the HELLO its sender answered: a HELLO tampered there still gets an AUTH this
        // session accepts, but then the peer rejects this session's AUTH, which does cover it.
        let local = session.handshake
        let author = sessions.first { peer in
            peer.honest && peer.handshake.localName == established.peer
                && peer.handshake.localNonce == hello.nonce && peer.handshake.localEpoch == hello.epoch
                && peer.sentAuths.contains {
                    $0.frame == frame && $0.answering.node == local.localName && $0.answering.nonce == local.localNonce
                }
        }
        expect(author != nil, "\(name) established by an AUTH no genuine peer made for it: \(frame)")
        expect(established.peer == hello.node && established.peerEpoch == hello.epoch, "established peer differs from its HELLO")
        if let author {
            expect(established.peerReceivedEpoch == author.resume.epoch && established.peerReceivedSequence == author.resume.sequence,
                   "resume point differs from the peer's")
        }
        if session.isDialer {
            expect(reply == nil, "the dialer replied on establishment")
        } else if let reply, case .auth = reply {
            session.sentAuths.append((reply, hello))
        } else {
            expect(false, "the acceptor established without its own AUTH")
        }
    case .reject:
        session.status = .failed
    }
    return output
}


fuzz { input in
    var reader = FuzzReader(input)
    let resumes = (0..<4).map { _ in (UInt64(reader.byte() % 4), UInt64(reader.byte())) }
    var sessions = [
        Session("a1", epoch: 111, role: .dialer(expectedPeer: "a2"), honest: true, secret: secret, nonce: 0xD1, resume: resumes[0]),
        Session("a1", epoch: 111, role: .dialer(expectedPeer: "a2"), honest: true, secret: secret, nonce: 0xD2, resume: resumes[1]),
        Session("a2", epoch: 222, role: .acceptor, honest: true, secret: secret, nonce: 0xA1, resume: resumes[2]),
        Session("a2", epoch: 222, role: .acceptor, honest: true, secret: secret, nonce: 0xA2, resume: resumes[3]),
        Session("a1", epoch: 111, role: .dialer(expectedPeer: "a2"), honest: false, secret: "wrong", nonce: 0xE1, resume: (0, 0)),
        Session("a2", epoch: 222, role: .dialer(expectedPeer: "a1"), honest: false, secret: "wrong", nonce: 0xE2, resume: (0, 0)),
        Session("a3", epoch: 333, role: .dialer(expectedPeer: "a2"), honest: false, secret: secret, nonce: 0xE3, resume: (0, 0)),
        Session("a3", epoch: 333, role: .acceptor, honest: false, secret: secret, nonce: 0xE4, resume: (0, 0)),
    ]
    // Every frame the adversary has seen: all HELLOs, then whatever the sessions send.
    var seen = sessions.map(\.handshake.hello)
    let names = ["a1", "a2", "a3", "a0", "", "A1", "a1 ", "a2\u{0}"]
    let epochs: [UInt64] = [111, 222, 333, 0, 1, .max]

    while !reader.isEmpty {
        let op = reader.byte()
        let target = Int(reader.byte()) % sessions.count
        var frames: [MeshFrame] = []
        switch op % 5 {
        case 0: // forward a frame seen on the network
            frames = [seen[Int(reader.byte()) % seen.count]]
        case 1: // flip bits in one byte of a seen frame
            var wire = Array(MeshFrameCodec.encode(seen[Int(reader.byte()) % seen.count]).readableBytesView)
            let position = Int(reader.byte()) % wire.count
            wire[position] ^= max(reader.byte(), 1)
            frames = decode(wire)
        case 2: // raw bytes
            frames = decode(reader.take(Int(reader.byte() % 96)))
        case 3: // a HELLO forged from known or chosen fields
            let nonce = reader.byte() < 200 ? [UInt8](repeating: [0xD1, 0xD2, 0xA1, 0xA2, 0xE1][Int(reader.byte()) % 5], count: MeshHello.nonceLength)
                                            : reader.take(MeshHello.nonceLength)
            frames = [.hello(MeshHello(version: reader.byte() < 240 ? MeshHello.protocolVersion : reader.byte(),
                                       node: names[Int(reader.byte()) % names.count],
                                       epoch: epochs[Int(reader.byte()) % epochs.count], nonce: nonce))]
        default: // an AUTH with a proof seen (or chosen) and a chosen resume point
            let proofs = seen.compactMap { frame -> [UInt8]? in if case .auth(let auth) = frame { return auth.proof } else { return nil } }
            let proof = proofs.isEmpty || reader.byte() > 230 ? reader.take(MeshAuth.proofLength) : proofs[Int(reader.byte()) % proofs.count]
            frames = [.auth(MeshAuth(proof: proof, resumeEpoch: UInt64(reader.byte() % 4), resumeSequence: UInt64(reader.byte())))]
        }
        for frame in frames {
            guard let delivered = decode(Array(MeshFrameCodec.encode(frame).readableBytesView)).first else { continue }
            let output = deliver(delivered, to: target, &sessions)
            switch output {
            case .send(let frame): seen.append(frame)
            case .established(_, let reply?): seen.append(reply)
            default: break
            }
        }
    }
}
