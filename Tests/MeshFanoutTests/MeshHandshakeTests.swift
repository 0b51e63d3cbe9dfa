import NIOCore
import Testing
@testable import MeshFanout

/// Two `MeshHandshake`s talking in memory; every frame crosses the real codec on its way.
/// The order: both send HELLO; the dialer answers the acceptor's HELLO with its AUTH; the
/// acceptor checks it and only then answers with its own AUTH; the dialer checks that.
@Suite struct MeshHandshakeTests {
    typealias Resume = (String) -> (epoch: UInt64, sequence: UInt64)

    static let secret = "correct horse battery staple"
    static let cluster: Set<String> = ["a1", "a2", "a3"]
    static func noResume(_ peer: String) -> (epoch: UInt64, sequence: UInt64) { (0, 0) }

    static func node(_ name: String, epoch: UInt64, role: MeshHandshake.Role, secret: String = secret,
                     peers: Set<String>? = nil, nonce: [UInt8]) -> MeshHandshake {
        MeshHandshake(localName: name, localEpoch: epoch, secret: secret, role: role,
                      knownPeers: peers ?? cluster.subtracting([name]), nonce: nonce)
    }

    /// a1 dials a2 (the smaller name dials).
    static func dialer(secret: String = secret, nonce: [UInt8] = nonceA) -> MeshHandshake {
        node("a1", epoch: 111, role: .dialer(expectedPeer: "a2"), secret: secret, nonce: nonce)
    }

    static func acceptor(secret: String = secret, nonce: [UInt8] = nonceB) -> MeshHandshake {
        node("a2", epoch: 222, role: .acceptor, secret: secret, nonce: nonce)
    }

    /// Something at a2's address that answers like an acceptor with `secret`, but without
    /// checking the dialer first: a dialer-role handshake named a2 produces exactly that AUTH.
    static func impostor(secret: String, nonce: [UInt8] = nonceB) -> MeshHandshake {
        node("a2", epoch: 222, role: .dialer(expectedPeer: "a1"), secret: secret, nonce: nonce)
    }

    /// The frame as the other side sees it after encoding, framing and decoding.
    static func transmit(_ frame: MeshFrame) -> MeshFrame {
        var stream = MeshFrameCodec.encode(frame)
        return try! MeshFrameDecoder(maxFrameLength: 4096).next(from: &stream)!
    }

    static func sent(_ output: MeshHandshake.Output) -> MeshFrame? {
        if case .send(let frame) = output { return frame }
        return nil
    }

    static func auth(_ output: MeshHandshake.Output) -> MeshAuth? {
        if case .send(.auth(let auth)) = output { return auth }
        return nil
    }

    static func rejected(_ output: MeshHandshake.Output) -> Bool {
        if case .reject = output { return true }
        return false
    }

    static func established(_ output: MeshHandshake.Output) -> MeshHandshake.Established? {
        if case .established(let established, _) = output { return established }
        return nil
    }

    static func reply(_ output: MeshHandshake.Output) -> MeshFrame? {
        if case .established(_, let reply) = output { return reply }
        return nil
    }

    /// Runs a full handshake; returns (dialer's last output, acceptor's last output).
    static func run(_ a: inout MeshHandshake, _ b: inout MeshHandshake,
                    resumeA: Resume = noResume, resumeB: Resume = noResume)
        -> (dialer: MeshHandshake.Output, acceptor: MeshHandshake.Output) {
        let helloA = transmit(a.hello), helloB = transmit(b.hello)
        let outA = a.receive(helloB, resume: resumeA)
        let outB = b.receive(helloA, resume: resumeB)
        guard let authA = sent(outA), outB == .wait else { return (outA, outB) }
        let acceptorDone = b.receive(transmit(authA), resume: resumeB)
        guard let authB = reply(acceptorDone) else { return (outA, acceptorDone) }
        return (a.receive(transmit(authB), resume: resumeA), acceptorDone)
    }

    // MARK: Success

    @Test func bothSidesBecomeEstablishedWithEachOthersNameAndEpoch() {
        var a = Self.dialer(), b = Self.acceptor()
        #expect(!a.isEstablished && !b.isEstablished)
        let (outA, outB) = Self.run(&a, &b)
        #expect(outA == .established(.init(peer: "a2", peerEpoch: 222, peerReceivedEpoch: 0, peerReceivedSequence: 0), reply: nil))
        #expect(Self.established(outB) == .init(peer: "a1", peerEpoch: 111, peerReceivedEpoch: 0, peerReceivedSequence: 0))
        #expect(a.isEstablished && b.isEstablished)
    }

    @Test func resumePointsTravelToTheOtherSide() {
        var a = Self.dialer(), b = Self.acceptor()
        var askedA: [String] = [], askedB: [String] = []
        let (outA, outB) = Self.run(&a, &b,
                                    resumeA: { askedA.append($0); return (222, 42) },
                                    resumeB: { askedB.append($0); return (111, 7) })
        // a1 received up to 42 from a2's epoch 222; a2 learns that, and the reverse.
        #expect(Self.established(outB) == .init(peer: "a1", peerEpoch: 111, peerReceivedEpoch: 222, peerReceivedSequence: 42))
        #expect(Self.established(outA) == .init(peer: "a2", peerEpoch: 222, peerReceivedEpoch: 111, peerReceivedSequence: 7))
        #expect(askedA == ["a2"])
        #expect(askedB == ["a1"])
    }

    @Test func helloAdvertisesNameEpochNonceAndVersion() {
        #expect(Self.dialer().hello == .hello(MeshHello(version: 1, node: "a1", epoch: 111, nonce: nonceA)))
    }

    @Test func dialerAnswersTheAcceptorsHelloWithA32ByteProofAndItsResumePoint() {
        var a = Self.dialer()
        let proof = Self.auth(a.receive(Self.transmit(Self.acceptor().hello), resume: { _ in (5, 6) }))
        #expect(proof?.proof.count == 32)
        #expect(MeshAuth.proofLength == 32)
        #expect(proof?.resumeEpoch == 5)
        #expect(proof?.resumeSequence == 6)
        #expect(!a.isEstablished)
    }

    @Test func acceptorSaysNothingUntilTheDialerHasProvenItself() {
        var b = Self.acceptor()
        var asked = false
        #expect(b.receive(Self.transmit(Self.dialer().hello), resume: { _ in asked = true; return (0, 0) }) == .wait)
        #expect(!asked, "the acceptor's resume point is not even looked up yet")
        #expect(!b.isEstablished)
    }

    @Test func acceptorRepliesWithItsOwnAuthOnceTheDialerIsVerified() {
        var a = Self.dialer(), b = Self.acceptor()
        let authA = Self.sent(a.receive(Self.transmit(b.hello), resume: Self.noResume))!
        _ = b.receive(Self.transmit(a.hello), resume: Self.noResume)
        let done = b.receive(Self.transmit(authA), resume: { _ in (111, 3) })
        guard case .auth(let authB) = Self.reply(done) else { Issue.record("no AUTH reply: \(done)"); return }
        #expect(authB.proof.count == 32)
        #expect(authB.resumeEpoch == 111 && authB.resumeSequence == 3)
        #expect(b.isEstablished)
    }

    @Test func acceptorAcceptsAHelloFromASmallerName() {
        var b = Self.acceptor()
        #expect(b.receive(.hello(MeshHello(node: "a1", epoch: 1, nonce: nonceA)), resume: Self.noResume) == .wait)
    }

    @Test func threeNodeClusterPairsUpInBothRoles() {
        var a2 = Self.node("a2", epoch: 2, role: .dialer(expectedPeer: "a3"), nonce: nonceA)
        var a3 = Self.node("a3", epoch: 3, role: .acceptor, nonce: nonceB)
        let (out2, out3) = Self.run(&a2, &a3)
        #expect(Self.established(out2) == .init(peer: "a3", peerEpoch: 3, peerReceivedEpoch: 0, peerReceivedSequence: 0))
        #expect(Self.established(out3) == .init(peer: "a2", peerEpoch: 2, peerReceivedEpoch: 0, peerReceivedSequence: 0))
    }

    @Test func freshNoncesAre32RandomBytes() {
        let first = MeshHandshake.makeNonce(), second = MeshHandshake.makeNonce()
        #expect(first.count == 32 && second.count == 32)
        #expect(first != second)
    }

    // MARK: Authentication failures

    @Test func wrongSecretIsRejectedByTheAcceptorWhichNeverRevealsItsProof() {
        var a = Self.dialer(), b = Self.acceptor(secret: "wrong")
        let (outA, outB) = Self.run(&a, &b)
        #expect(Self.sent(outA)?.type == .auth)
        #expect(outB == .reject("authentication failed: wrong secret or tampered handshake"))
        #expect(!a.isEstablished && !b.isEstablished)
        // Once failed, it stays failed, even for a frame that would otherwise be fine.
        #expect(b.receive(Self.transmit(a.hello), resume: Self.noResume) == .reject("link already failed"))
        #expect(!b.isEstablished)
    }

    @Test func dialerWithTheWrongSecretIsRejected() {
        var a = Self.dialer(secret: "wrong"), b = Self.acceptor()
        let (_, outB) = Self.run(&a, &b)
        #expect(Self.rejected(outB))
        #expect(!a.isEstablished && !b.isEstablished)
    }

    @Test func emptySecretDoesNotMatchANonEmptyOne() {
        var a = Self.dialer(secret: ""), b = Self.acceptor()
        #expect(Self.rejected(Self.run(&a, &b).acceptor))
    }

    @Test func dialerRejectsAnAcceptorThatDoesNotKnowTheSecret() {
        var a = Self.dialer(), fake = Self.impostor(secret: "wrong")
        _ = a.receive(Self.transmit(fake.hello), resume: Self.noResume)
        let forged = Self.sent(fake.receive(Self.transmit(a.hello), resume: Self.noResume))!
        #expect(a.receive(Self.transmit(forged), resume: Self.noResume)
            == .reject("authentication failed: wrong secret or tampered handshake"))
        #expect(!a.isEstablished)
    }

    @Test func dialerAcceptsAnAcceptorAuthBuiltWithTheRightSecret() {
        // The same construction as above, with the right secret: proves the impostor's AUTH is
        // the acceptor's format, so the rejection above is due to the secret alone.
        var a = Self.dialer(), twin = Self.impostor(secret: Self.secret)
        _ = a.receive(Self.transmit(twin.hello), resume: Self.noResume)
        let auth = Self.sent(twin.receive(Self.transmit(a.hello), resume: Self.noResume))!
        #expect(Self.established(a.receive(Self.transmit(auth), resume: Self.noResume))?.peer == "a2")
    }

    @Test func replayedAuthFromAnEarlierSessionIsRejectedByTheAcceptor() {
        // Session 1, recorded by an eavesdropper.
        var a1 = Self.dialer(), b1 = Self.acceptor()
        let helloA = Self.transmit(a1.hello)
        let authA = Self.sent(a1.receive(Self.transmit(b1.hello), resume: Self.noResume))!
        _ = b1.receive(helloA, resume: Self.noResume)
        _ = b1.receive(authA, resume: Self.noResume)
        #expect(b1.isEstablished, "the genuine AUTH works in its own session")

        // Session 2: the acceptor has a fresh nonce; the recorded HELLO and AUTH are replayed.
        var b2 = Self.acceptor(nonce: Array(repeating: 0x42, count: 32))
        #expect(b2.receive(helloA, resume: Self.noResume) == .wait)
        #expect(Self.rejected(b2.receive(authA, resume: Self.noResume)))
        #expect(!b2.isEstablished)
    }

    @Test func replayedAcceptorAuthFromAnEarlierSessionIsRejectedByTheDialer() {
        // Session 1, recorded.
        var a1 = Self.dialer(), b1 = Self.acceptor()
        let helloB = Self.transmit(b1.hello)
        let authA = Self.sent(a1.receive(helloB, resume: Self.noResume))!
        _ = b1.receive(Self.transmit(a1.hello), resume: Self.noResume)
        let recordedAuthB = Self.reply(b1.receive(Self.transmit(authA), resume: Self.noResume))!

        // A fake a2 replays HELLO and AUTH of session 1 to a dialer with a fresh nonce.
        var a2 = Self.dialer(nonce: Array(repeating: 0x17, count: 32))
        #expect(Self.sent(a2.receive(helloB, resume: Self.noResume)) != nil)
        #expect(Self.rejected(a2.receive(recordedAuthB, resume: Self.noResume)))
        #expect(!a2.isEstablished)
    }

    @Test func reflectedAuthIsRejected() {
        var a = Self.dialer()
        let authA = Self.sent(a.receive(Self.transmit(Self.acceptor().hello), resume: Self.noResume))!
        #expect(Self.rejected(a.receive(authA, resume: Self.noResume)))
    }

    @Test(arguments: ["resumeSequence", "resumeEpoch", "proof"])
    func tamperedDialerAuthIsRejected(_ field: String) {
        var a = Self.dialer(), b = Self.acceptor()
        guard var auth = Self.auth(a.receive(Self.transmit(b.hello), resume: { _ in (222, 10) })) else {
            Issue.record("no AUTH"); return
        }
        switch field {
        case "resumeSequence": auth.resumeSequence = 0 // pretend nothing arrived: provoke a full resend
        case "resumeEpoch": auth.resumeEpoch = 1
        default: auth.proof[31] ^= 1
        }
        _ = b.receive(Self.transmit(a.hello), resume: Self.noResume)
        #expect(Self.rejected(b.receive(Self.transmit(.auth(auth)), resume: Self.noResume)))
        #expect(!b.isEstablished)
    }

    @Test(arguments: ["resumeSequence", "resumeEpoch", "proof"])
    func tamperedAcceptorAuthIsRejected(_ field: String) {
        var a = Self.dialer(), b = Self.acceptor()
        let authA = Self.sent(a.receive(Self.transmit(b.hello), resume: Self.noResume))!
        _ = b.receive(Self.transmit(a.hello), resume: Self.noResume)
        guard case .auth(var auth) = Self.reply(b.receive(Self.transmit(authA), resume: { _ in (111, 10) })) else {
            Issue.record("no AUTH reply"); return
        }
        switch field {
        case "resumeSequence": auth.resumeSequence = 1_000
        case "resumeEpoch": auth.resumeEpoch = 1
        default: auth.proof[0] ^= 0x80
        }
        #expect(Self.rejected(a.receive(Self.transmit(.auth(auth)), resume: Self.noResume)))
        #expect(!a.isEstablished)
    }

    @Test func tamperedHelloEpochIsDetectedByTheProof() {
        var a = Self.dialer(), b = Self.acceptor()
        guard case .hello(var hello) = Self.transmit(a.hello) else { return }
        hello.epoch = 999
        let authA = Self.sent(a.receive(Self.transmit(b.hello), resume: Self.noResume))!
        _ = b.receive(.hello(hello), resume: Self.noResume)
        #expect(Self.rejected(b.receive(authA, resume: Self.noResume)))
    }

    /// Found by `make fuzz` (FuzzMeshHandshake): the dialer's proof covers both names, both
    /// nonces and its own epoch, not the acceptor's epoch it was shown. A man in the middle who
    /// changes that epoch gets the acceptor established (with the dialer's true name, epoch and
    /// resume point), but the dialer then rejects the acceptor's AUTH, whose proof covers the
    /// true epoch: no side ever runs with a wrong peer epoch. Dropping the last AUTH has the
    /// same one-sided effect, and the acceptor's link closes when the dialer hangs up.
    @Test func tamperedAcceptorEpochGetsTheAcceptorUpButTheDialerRejectsItsAuth() {
        var a = Self.dialer(), b = Self.acceptor()
        guard case .hello(var helloB) = Self.transmit(b.hello) else { return }
        helloB.epoch = 333
        let authA = Self.sent(a.receive(.hello(helloB), resume: Self.noResume))!
        #expect(b.receive(Self.transmit(a.hello), resume: Self.noResume) == .wait)
        let acceptorDone = b.receive(Self.transmit(authA), resume: Self.noResume)
        #expect(Self.established(acceptorDone) == .init(peer: "a1", peerEpoch: 111, peerReceivedEpoch: 0, peerReceivedSequence: 0))
        let authB = Self.reply(acceptorDone)!
        #expect(Self.rejected(a.receive(Self.transmit(authB), resume: Self.noResume)))
        #expect(!a.isEstablished)
    }

    @Test func tamperedHelloNonceIsDetectedByTheProof() {
        var a = Self.dialer(), b = Self.acceptor()
        guard case .hello(var hello) = Self.transmit(a.hello) else { return }
        hello.nonce[0] ^= 0xFF
        let authA = Self.sent(a.receive(Self.transmit(b.hello), resume: Self.noResume))!
        _ = b.receive(.hello(hello), resume: Self.noResume)
        #expect(Self.rejected(b.receive(authA, resume: Self.noResume)))
    }

    // MARK: Protocol violations before authentication

    static let nonHandshakeFrames: [MeshFrame] = [
        .sub("r1"), .unsub("r1"), .pub(sequence: 1, room: "r1", payload: buffer("2[]")),
        .snapshot(["r1"]), .ack(1), .ping(1), .pong(1), .goodbye("bye"),
    ]

    @Test(arguments: nonHandshakeFrames)
    func nonHandshakeFrameBeforeHelloIsRejected(_ frame: MeshFrame) {
        for var side in [Self.acceptor(), Self.dialer()] {
            #expect(side.receive(frame, resume: Self.noResume) == .reject("\(frame.type) frame before authentication"))
            #expect(!side.isEstablished)
            // A HELLO after that does not revive it.
            #expect(Self.rejected(side.receive(Self.acceptor().hello, resume: Self.noResume)))
        }
    }

    @Test(arguments: nonHandshakeFrames)
    func nonHandshakeFrameBetweenHelloAndAuthIsRejected(_ frame: MeshFrame) {
        var a = Self.dialer(), b = Self.acceptor()
        let authA = Self.sent(a.receive(Self.transmit(b.hello), resume: Self.noResume))!
        _ = b.receive(Self.transmit(a.hello), resume: Self.noResume)
        #expect(Self.rejected(b.receive(frame, resume: Self.noResume)))
        #expect(Self.rejected(b.receive(authA, resume: Self.noResume)))
        #expect(!b.isEstablished)
        #expect(Self.rejected(a.receive(frame, resume: Self.noResume)))
        #expect(!a.isEstablished)
    }

    @Test func authBeforeHelloIsRejected() {
        let auth = MeshFrame.auth(MeshAuth(proof: Array(repeating: 0, count: 32), resumeEpoch: 0, resumeSequence: 0))
        var b = Self.acceptor(), a = Self.dialer()
        #expect(b.receive(auth, resume: Self.noResume) == .reject("auth frame before authentication"))
        #expect(Self.rejected(a.receive(auth, resume: Self.noResume)))
    }

    @Test func secondHelloWhileAwaitingAuthIsRejected() {
        var b = Self.acceptor()
        _ = b.receive(Self.dialer().hello, resume: Self.noResume)
        #expect(Self.rejected(b.receive(Self.dialer().hello, resume: Self.noResume)))
    }

    @Test func secondHelloAfterEstablishedIsRejected() {
        var a = Self.dialer(), b = Self.acceptor()
        _ = Self.run(&a, &b)
        #expect(a.isEstablished && b.isEstablished)
        #expect(b.receive(a.hello, resume: Self.noResume) == .reject("handshake frame after authentication"))
        #expect(a.receive(b.hello, resume: Self.noResume) == .reject("handshake frame after authentication"))
        #expect(!a.isEstablished && !b.isEstablished)
    }

    @Test func unknownPeerNameIsRejected() {
        var b = Self.acceptor()
        let output = b.receive(.hello(MeshHello(node: "a0", epoch: 1, nonce: nonceA)), resume: Self.noResume)
        #expect(output == .reject("unknown node 'a0': not in this node's cluster.conf"))
        #expect(b.rejectMetricReason == "unknown_peer")
    }

    @Test func peerUsingThisNodesOwnNameIsRejected() {
        // Whether or not the local name is (wrongly) listed among the peers.
        for peers in [Self.cluster.subtracting(["a2"]), Self.cluster] {
            var b = Self.node("a2", epoch: 2, role: .acceptor, peers: peers, nonce: nonceB)
            #expect(b.receive(.hello(MeshHello(node: "a2", epoch: 5, nonce: nonceA)), resume: Self.noResume)
                == .reject("peer claims this node's own name 'a2'"))
            var d = Self.node("a2", epoch: 2, role: .dialer(expectedPeer: "a2"), peers: peers, nonce: nonceB)
            #expect(Self.rejected(d.receive(.hello(MeshHello(node: "a2", epoch: 5, nonce: nonceA)), resume: Self.noResume)))
        }
    }

    @Test func dialerTalkingToTheWrongPeerRejects() {
        var a = Self.dialer()
        let output = a.receive(.hello(MeshHello(node: "a3", epoch: 3, nonce: nonceB)), resume: Self.noResume)
        #expect(output == .reject("dialed 'a2' but 'a3' answered"))
    }

    @Test func acceptorRefusesAHelloFromALargerName() {
        var b = Self.acceptor()
        let output = b.receive(.hello(MeshHello(node: "a3", epoch: 3, nonce: nonceA)), resume: Self.noResume)
        #expect(output == .reject("'a3' must not dial 'a2': the smaller name dials"))
    }

    @Test(arguments: [UInt8(0), 2, 255])
    func unsupportedVersionIsRejected(_ version: UInt8) {
        var b = Self.acceptor()
        let output = b.receive(.hello(MeshHello(version: version, node: "a1", epoch: 1, nonce: nonceA)), resume: Self.noResume)
        #expect(output == .reject("unsupported mesh protocol version \(version)"))
    }

    @Test func epochZeroIsRejected() {
        var b = Self.acceptor()
        let output = b.receive(.hello(MeshHello(node: "a1", epoch: 0, nonce: nonceA)), resume: Self.noResume)
        #expect(output == .reject("peer epoch must not be 0"))
        var a = Self.dialer()
        #expect(Self.rejected(a.receive(.hello(MeshHello(node: "a2", epoch: 0, nonce: nonceB)), resume: Self.noResume)))
    }

    @Test func rejectedHelloDoesNotAskForAResumePoint() {
        var a = Self.dialer()
        var asked = false
        _ = a.receive(.hello(MeshHello(node: "zz", epoch: 1, nonce: nonceA)), resume: { _ in asked = true; return (0, 0) })
        #expect(!asked)
    }

    // MARK: Proof and comparison

    /// The proof a dialer sends in answer to `peer`'s HELLO.
    static func proof(local: String = "a1", secret: String = secret, epoch: UInt64 = 1, nonce: [UInt8] = nonceA,
                      peer: String = "a2", peerNonce: [UInt8] = nonceB,
                      resume: (epoch: UInt64, sequence: UInt64) = (2, 3)) -> [UInt8] {
        var handshake = MeshHandshake(localName: local, localEpoch: epoch, secret: secret,
                                      role: .dialer(expectedPeer: peer), knownPeers: [peer], nonce: nonce)
        let output = handshake.receive(.hello(MeshHello(node: peer, epoch: 5, nonce: peerNonce)), resume: { _ in resume })
        return auth(output)?.proof ?? []
    }

    @Test func proofIs32BytesAndDependsOnEveryInput() {
        let base = Self.proof()
        #expect(base.count == 32)
        #expect(Self.proof() == base)
        let variants = [
            Self.proof(secret: "other"),
            Self.proof(local: "a0"),                        // sender name
            Self.proof(peer: "a3"),                         // receiver name
            Self.proof(local: "a2", peer: "a1"),            // direction
            Self.proof(nonce: Array(repeating: 1, count: 32)),
            Self.proof(peerNonce: Array(repeating: 1, count: 32)),
            Self.proof(epoch: 9),
            Self.proof(resume: (9, 3)),
            Self.proof(resume: (2, 9)),
        ]
        for variant in variants {
            #expect(variant.count == 32)
            #expect(variant != base)
        }
        // Names are length-prefixed, so moving a character across the boundary changes the proof.
        #expect(Self.proof(local: "ab", peer: "c") != Self.proof(local: "a", peer: "bc"))
    }

    @Test func constantTimeEqualComparesContentAndLength() {
        let value: [UInt8] = Array(0..<32)
        #expect(MeshHandshake.constantTimeEqual(value, value))
        #expect(MeshHandshake.constantTimeEqual([], []))
        for index in value.indices {
            var other = value
            other[index] ^= 0x80
            #expect(!MeshHandshake.constantTimeEqual(value, other))
        }
        #expect(!MeshHandshake.constantTimeEqual(value, Array(value.dropLast())))
        #expect(!MeshHandshake.constantTimeEqual(Array(value.dropLast()), value))
        #expect(!MeshHandshake.constantTimeEqual([], [0]))
    }
}
