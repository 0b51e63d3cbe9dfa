import CLibCrypto

/// The opening of a mesh link, without sockets: both sides send HELLO at once. The dialer
/// answers the acceptor's HELLO with AUTH, an HMAC-SHA256 with the shared secret over both
/// names, both nonces, its epoch and its resume point. The acceptor checks it and only then
/// sends its own AUTH, so a stranger who connects learns nothing it could test guesses of the
/// secret against. On a valid AUTH from the other side, each side's link is up.
///
/// Nothing but HELLO and AUTH is accepted before that, so an unauthenticated peer can cause no
/// effect. Who dials is fixed (the smaller node name dials the larger), so each pair of nodes
/// has exactly one link; an acceptor refuses a HELLO from a node that should not dial it.
public struct MeshHandshake {
    public enum Role: Sendable, Equatable {
        case dialer(expectedPeer: String)
        case acceptor
    }

    public struct Established: Equatable, Sendable {
        public var peer: String
        public var peerEpoch: UInt64
        /// What the peer says it received from us: our epoch it saw and the last sequence.
        public var peerReceivedEpoch: UInt64
        public var peerReceivedSequence: UInt64
    }

    public enum Output: Equatable, Sendable {
        case send(MeshFrame)
        /// Nothing to do yet (the acceptor waits for the dialer's AUTH).
        case wait
        /// The link is up; `reply` (the acceptor's AUTH) must be sent first, if present.
        case established(Established, reply: MeshFrame?)
        case reject(String)
    }

    private enum State: Sendable {
        case awaitingHello
        case awaitingAuth(peer: MeshHello)
        case established
        case failed
    }

    public let localName: String
    public let localEpoch: UInt64
    public let localNonce: [UInt8]
    private let key: [UInt8]
    public let role: Role
    /// The peers in this node's cluster.conf when the link was made (a reload changes the set
    /// for links made after it, see `MeshFanout.apply`).
    private let knownPeers: Set<String>
    private var state: State = .awaitingHello
    /// The `chatmesh_mesh_link_rejects_total` reason of the last `.reject`: `unknown_peer` for a
    /// node missing from this node's cluster.conf (a reload still rolling through the cluster:
    /// the peer retries and gets in once this node has reloaded too), `auth` for the rest.
    public private(set) var rejectMetricReason = "auth"

    public init(localName: String, localEpoch: UInt64, secret: String, role: Role, knownPeers: Set<String>,
                nonce: [UInt8] = MeshHandshake.makeNonce()) {
        self.localName = localName
        self.localEpoch = localEpoch
        self.localNonce = nonce
        self.key = Array(secret.utf8)
        self.role = role
        self.knownPeers = knownPeers
    }

    public static func makeNonce() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<MeshHello.nonceLength).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    public var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    public var hello: MeshFrame {
        .hello(MeshHello(node: localName, epoch: localEpoch, nonce: localNonce))
    }

    /// `resume(peer)` gives what we received from that peer so far: (its epoch, last sequence).
    public mutating func receive(_ frame: MeshFrame, resume: (String) -> (epoch: UInt64, sequence: UInt64)) -> Output {
        switch (state, frame) {
        case (.awaitingHello, .hello(let hello)):
            if let problem = check(hello) { return fail(problem.reason, metricReason: problem.metricReason) }
            state = .awaitingAuth(peer: hello)
            guard case .dialer = role else { return .wait }
            return .send(ownAuth(to: hello, resume: resume))
        case (.awaitingAuth(let peer), .auth(let auth)):
            let expected = Self.proof(key: key, sender: peer.node, receiver: localName, senderNonce: peer.nonce,
                                      receiverNonce: localNonce, senderEpoch: peer.epoch,
                                      resumeEpoch: auth.resumeEpoch, resumeSequence: auth.resumeSequence)
            guard Self.constantTimeEqual(expected, auth.proof) else { return fail("authentication failed: wrong secret or tampered handshake") }
            state = .established
            let established = Established(peer: peer.node, peerEpoch: peer.epoch,
                                          peerReceivedEpoch: auth.resumeEpoch, peerReceivedSequence: auth.resumeSequence)
            // The acceptor proves itself only to a dialer that has proven itself.
            let reply: MeshFrame? = role == .acceptor ? ownAuth(to: peer, resume: resume) : nil
            return .established(established, reply: reply)
        case (.established, _):
            return fail("handshake frame after authentication")
        case (.failed, _):
            return .reject("link already failed")
        default:
            return fail("\(frame.type) frame before authentication")
        }
    }

    private func ownAuth(to peer: MeshHello, resume: (String) -> (epoch: UInt64, sequence: UInt64)) -> MeshFrame {
        let (epoch, sequence) = resume(peer.node)
        let proof = Self.proof(key: key, sender: localName, receiver: peer.node, senderNonce: localNonce,
                               receiverNonce: peer.nonce, senderEpoch: localEpoch, resumeEpoch: epoch, resumeSequence: sequence)
        return .auth(MeshAuth(proof: proof, resumeEpoch: epoch, resumeSequence: sequence))
    }

    private func check(_ hello: MeshHello) -> (reason: String, metricReason: String)? {
        guard hello.version == MeshHello.protocolVersion else { return ("unsupported mesh protocol version \(hello.version)", "auth") }
        guard hello.node != localName else { return ("peer claims this node's own name '\(localName)'", "auth") }
        guard knownPeers.contains(hello.node) else { return (Self.unknownPeer(hello.node), "unknown_peer") }
        guard hello.epoch != 0 else { return ("peer epoch must not be 0", "auth") }
        switch role {
        case .dialer(let expected):
            guard hello.node == expected else { return ("dialed '\(expected)' but '\(hello.node)' answered", "auth") }
        case .acceptor:
            guard hello.node < localName else { return ("'\(hello.node)' must not dial '\(localName)': the smaller name dials", "auth") }
        }
        return nil
    }

    private mutating func fail(_ reason: String, metricReason: String = "auth") -> Output {
        state = .failed
        rejectMetricReason = metricReason
        return .reject(reason)
    }

    /// The refusal of a node that is not in this node's cluster.conf: the peer's GOODBYE and the
    /// log line say so, so the operator of a reload rolling host by host knows what to do.
    public static func unknownPeer(_ node: String) -> String {
        "unknown node '\(node.prefix(64))': not in this node's cluster.conf"
    }

    static func proof(key: [UInt8], sender: String, receiver: String, senderNonce: [UInt8], receiverNonce: [UInt8],
                      senderEpoch: UInt64, resumeEpoch: UInt64, resumeSequence: UInt64) -> [UInt8] {
        var message = Array("chatmesh-mesh-auth-v1".utf8)
        for name in [sender, receiver] {
            let bytes = Array(name.utf8)
            message.append(UInt8(truncatingIfNeeded: bytes.count >> 8))
            message.append(UInt8(truncatingIfNeeded: bytes.count))
            message.append(contentsOf: bytes)
        }
        message.append(contentsOf: senderNonce)
        message.append(contentsOf: receiverNonce)
        for value in [senderEpoch, resumeEpoch, resumeSequence] {
            withUnsafeBytes(of: value.bigEndian) { message.append(contentsOf: $0) }
        }
        return hmacSHA256(key: key, message: message)
    }

    /// HMAC-SHA256 (RFC 2104) by OpenSSL's libcrypto.
    static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var code = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
        var length: UInt32 = 0
        // A trailing zero byte, not counted, keeps the pointers non-nil for an empty key.
        let done = (key + [0]).withUnsafeBufferPointer { key in
            (message + [0]).withUnsafeBufferPointer { message in
                code.withUnsafeMutableBufferPointer { code in
                    HMAC(EVP_sha256(), key.baseAddress, Int32(key.count - 1), message.baseAddress, message.count - 1,
                         code.baseAddress, &length)
                }
            }
        }
        precondition(done != nil && length == SHA256_DIGEST_LENGTH, "libcrypto HMAC-SHA256 failed")
        return code
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}
