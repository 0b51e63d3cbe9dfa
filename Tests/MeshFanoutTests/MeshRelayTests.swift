import ChatCore
import NIOCore
import NIOEmbedded
import Testing
@testable import MeshFanout

/// The session relay between real `MeshFanout`s over in-memory links (docs/RELAY.md): a node
/// relays a client's GET, POST or WebSocket for a session another node owns, and the owner
/// answers through the same link. a1 dials a2 and a3; a2 dials a3.
@Suite struct MeshRelayTests {
    func mesh(_ names: [String] = ["a1", "a2", "a3"]) throws -> RelayTestMesh {
        try RelayTestMesh(names.map { RelayTestNode($0) })
    }

    @Test func theMeshIsTheRelayOfItsFanout() throws {
        let node = RelayTestNode("a1")
        let fanout: any Fanout = node.mesh
        #expect(fanout.relay === node.mesh)
    }

    // MARK: GET and POST

    @Test func aGetIsRelayedToItsOwnerAndItsReplyComesBack() throws {
        let mesh = try mesh()
        let a1 = mesh.nodes[0], a2 = mesh.nodes[1]
        let sid = a2.sid()
        #expect(a1.mesh.isPeerSession(sid: sid))
        #expect(!a2.mesh.isPeerSession(sid: sid)) // its own

        let outcome = RelayOutcome()
        _ = a1.mesh.send(relayRequest(.get, sid), completion: outcome.completion)
        try mesh.settle()
        // a1 dialed a2: its ids are odd.
        #expect(mesh.frames("a1", "a2") == [.relayRequest(id: 1, request: relayRequest(.get, sid))])
        #expect(a2.owner.relayed.count == 1)
        let relayed = try #require(a2.owner.relayed.first)
        #expect(relayed.request == relayRequest(.get, sid))
        #expect(relayed.peer == "a1")
        #expect(outcome.results.isEmpty)

        relayed.exchange.reply(reply(200, "6:40{\"sid\":\"x\"}"))
        try mesh.settle()
        #expect(mesh.frames("a2", "a1") == [.relayReply(id: 1, reply: reply(200, "6:40{\"sid\":\"x\"}"))])
        #expect(outcome.reply == reply(200, "6:40{\"sid\":\"x\"}"))
        #expect(a1.metrics.relayed("get", "ok") == 1)
        #expect(a1.metrics.samples("chatmesh_relay_latency_seconds{kind=get}") == 1)
        #expect(a2.metrics.relayed("get", "ok") == 1)
        #expect(a1.mesh.relayLink(to: "a2")?.outbound.entries.isEmpty == true)
        #expect(a2.mesh.relayLink(to: "a1")?.inbound.entries.isEmpty == true)
    }

    @Test func postsOfOneSessionReachTheOwnerInOrderWithTheirBodies() throws {
        let mesh = try mesh()
        let a3 = mesh.nodes[2], a2 = mesh.nodes[1]
        let sid = a2.sid()
        let outcomes = (0..<3).map { _ in RelayOutcome() }
        for (index, outcome) in outcomes.enumerated() {
            _ = a3.mesh.send(relayRequest(.post, sid, origin: nil, body: "4\(index)"), completion: outcome.completion)
        }
        try mesh.settle()
        #expect(a2.owner.relayed.map { String(buffer: $0.request.body) } == ["40", "41", "42"])
        #expect(a2.owner.relayed.allSatisfy { $0.request.origin == nil && $0.peer == "a3" })
        // a3 accepted a2's link: its ids are even.
        let ids = mesh.frames("a3", "a2").compactMap { frame -> UInt64? in
            guard case .relayRequest(let id, _) = frame else { return nil }
            return id
        }
        #expect(ids == [2, 4, 6])
        for relayed in a2.owner.relayed.reversed() { relayed.exchange.reply(reply(200, "ok")) }
        try mesh.settle()
        #expect(outcomes.allSatisfy { $0.reply == reply(200, "ok") })
        #expect(a3.metrics.relayed("post", "ok") == 3)
    }

    @Test func aHeldRequestIsAnsweredWhenTheOwnerRepliesLater() throws {
        let mesh = try mesh()
        let a1 = mesh.nodes[0], a2 = mesh.nodes[1]
        let outcome = RelayOutcome()
        _ = a1.mesh.send(relayRequest(.get, a2.sid()), completion: outcome.completion)
        try mesh.settle()
        a1.loop.advanceTime(by: .seconds(20))
        a2.loop.advanceTime(by: .seconds(20))
        try mesh.settle()
        #expect(outcome.results.isEmpty)

        let exchange = try #require(a2.owner.relayed.first?.exchange)
        exchange.reply(reply(200, "2"))
        #expect(exchange.isFinished)
        try mesh.settle()
        #expect(outcome.reply == reply(200, "2"))
        // A second reply goes nowhere.
        exchange.reply(reply(200, "again"))
        try mesh.settle()
        #expect(mesh.frames("a2", "a1").count == 1)
    }

    @Test func cancellingTellsTheOwnerItsClientIsGone() throws {
        let mesh = try mesh()
        let a1 = mesh.nodes[0], a2 = mesh.nodes[1]
        let outcome = RelayOutcome()
        let cancel = a1.mesh.send(relayRequest(.get, a2.sid()), completion: outcome.completion)
        try mesh.settle()
        cancel()
        try mesh.settle()
        #expect(mesh.frames("a1", "a2").last == .relayClose(id: 1, code: 1001))
        let relayed = try #require(a2.owner.relayed.first)
        #expect(relayed.ended.value == .clientGone)
        #expect(outcome.results.isEmpty)
        #expect(a1.metrics.relayed("get", "cancelled") == 1)
        #expect(a2.metrics.relayed("get", "cancelled") == 1)
        // The owner's reply after that is not sent.
        relayed.exchange.reply(reply(200, "late"))
        try mesh.settle()
        #expect(mesh.frames("a2", "a1").isEmpty)
        #expect(outcome.results.isEmpty)
        cancel() // twice: nothing more
        try mesh.settle()
        #expect(mesh.frames("a1", "a2").count == 2)
    }

    @Test func aReplyCrossingTheCancelIsDroppedAndTheLinkStays() throws {
        let mesh = try mesh()
        let a1 = mesh.nodes[0], a2 = mesh.nodes[1]
        let outcome = RelayOutcome()
        let cancel = a1.mesh.send(relayRequest(.get, a2.sid()), completion: outcome.completion)
        try mesh.settle()
        // Both leave before either arrives.
        a2.owner.relayed[0].exchange.reply(reply(200, "crossing"))
        cancel()
        a1.loop.run()
        a2.loop.run()
        try mesh.settle()
        #expect(mesh.frames("a2", "a1") == [.relayReply(id: 1, reply: reply(200, "crossing"))])
        #expect(mesh.frames("a1", "a2").last == .relayClose(id: 1, code: 1001))
        #expect(outcome.results.isEmpty)
        #expect(a2.owner.relayed[0].ended.value == nil) // it replied: no end after that
        #expect(mesh.channel(of: "a1", to: "a2").isActive)
        #expect(a1.metrics.violations == 0 && a2.metrics.violations == 0)

        // And the link carries the next one.
        let next = RelayOutcome()
        _ = a1.mesh.send(relayRequest(.post, a2.sid(), body: "x"), completion: next.completion)
        try mesh.settle()
        a2.owner.relayed[1].exchange.reply(reply(200, "ok"))
        try mesh.settle()
        #expect(next.reply == reply(200, "ok"))
    }

    // MARK: No owner, unknown sessions

    @Test func aSidWithoutAPeerTagHasNoOwnerAtOnce() throws {
        let mesh = try mesh()
        let a1 = mesh.nodes[0]
        for sid in ["nope", "0123456789abcdefghij", a1.sid(), ""] {
            #expect(!a1.mesh.isPeerSession(sid: sid))
            let outcome = RelayOutcome()
            _ = a1.mesh.send(relayRequest(.get, sid), completion: outcome.completion)
            a1.loop.run()
            #expect(outcome.failure == .noOwner, "\(sid)")
        }
        #expect(mesh.frames("a1", "a2").isEmpty && mesh.frames("a1", "a3").isEmpty)
        #expect(a1.metrics.relayed("get", "unknown_sid") == 4)
    }

    @Test func anOwnerWithoutALiveLinkFailsAtOnce() throws {
        let a1 = RelayTestNode("a1"), a2 = RelayTestNode("a2")
        // No links at all.
        let outcome = RelayOutcome()
        #expect(a1.mesh.isPeerSession(sid: a2.sid()))
        _ = a1.mesh.send(relayRequest(.post, a2.sid()), completion: outcome.completion)
        a1.loop.run()
        #expect(outcome.failure == .noOwner)
        #expect(a1.mesh.openStream(sid: a2.sid(), origin: nil, onFrame: { _, _ in }, onClose: { _ in }) == nil)
    }

    @Test func theOwnerAnswersSessionUnknownWithoutAnOwnerHandler() throws {
        let mesh = try RelayTestMesh([RelayTestNode("a1"), RelayTestNode("a2", ownerHandler: false)])
        let a1 = mesh.nodes[0], a2 = mesh.nodes[1]
        let outcome = RelayOutcome()
        _ = a1.mesh.send(relayRequest(.get, a2.sid()), completion: outcome.completion)
        try mesh.settle()
        #expect(outcome.reply == RelayReply(status: 400, contentType: "application/json",
                                            body: ByteBuffer(string: #"{"code":1,"message":"Session ID unknown"}"#)))
        #expect(a1.metrics.relayed("get", "unknown_sid") == 1)
        #expect(a2.metrics.relayed("get", "unknown_sid") == 1)
    }

    @Test func aSidTaggedForAnotherNodeIsUnknownToTheOwnerAndNotHandled() throws {
        let mesh = try mesh(["a1", "a2"])
        let a2 = mesh.nodes[1]
        // A peer relaying a1's own sid to a2 (as if its config named the nodes differently).
        let channel = mesh.channel(of: "a2", to: "a1")
        try channel.writeInbound(MeshFrameCodec.encode(.relayRequest(id: 1, request: relayRequest(.get, mesh.nodes[0].sid()))))
        a2.loop.run()
        #expect(a2.owner.relayed.isEmpty)
        #expect(try writtenFrames(channel) == [.relayReply(id: 1, reply: .sessionUnknown)])
        #expect(channel.isActive)
        #expect(a2.metrics.relayed("get", "unknown_sid") == 1)
    }

    // MARK: Links going down

    @Test func theOwnersLinkGoingDownFailsEveryPendingRequestAtOnce() throws {
        let mesh = try mesh()
        let a1 = mesh.nodes[0], a2 = mesh.nodes[1]
        let outcomes = (0..<3).map { _ in RelayOutcome() }
        for outcome in outcomes { _ = a1.mesh.send(relayRequest(.get, a2.sid()), completion: outcome.completion) }
        let stream = StreamEvents()
        let handle = a1.mesh.openStream(sid: a2.sid("fedcba9876543210"), origin: nil, onFrame: stream.onFrame, onClose: stream.onClose)
        #expect(handle != nil)
        try mesh.settle()
        #expect(a2.owner.relayed.count == 3 && a2.owner.streams.count == 1)

        let started = a1.loop.now
        _ = try mesh.channel(of: "a1", to: "a2").close().wait()
        a1.loop.run()
        #expect(outcomes.allSatisfy { $0.failure == .peerDown })
        #expect(stream.closes == [1011])
        #expect(a1.loop.now == started)
        #expect(a1.metrics.relayed("get", "peer_down") == 3)
        #expect(a1.metrics.relayed("websocket", "peer_down") == 1)
        // And the next request, with the link still down, has no owner.
        let after = RelayOutcome()
        _ = a1.mesh.send(relayRequest(.get, a2.sid()), completion: after.completion)
        a1.loop.run()
        #expect(after.failure == .noOwner)
    }

    @Test func theRelaysLinkGoingDownEndsItsExchangesAndStreamsOnTheOwner() throws {
        let mesh = try mesh()
        let a1 = mesh.nodes[0], a2 = mesh.nodes[1]
        _ = a1.mesh.send(relayRequest(.get, a2.sid()), completion: RelayOutcome().completion)
        _ = a1.mesh.openStream(sid: a2.sid(), origin: "https://chat.example", onFrame: { _, _ in }, onClose: { _ in })
        try mesh.settle()
        let relayed = try #require(a2.owner.relayed.first)
        let sink = try #require(a2.owner.streams.first?.sink)

        _ = try mesh.channel(of: "a2", to: "a1").close().wait()
        a2.loop.run()
        #expect(relayed.ended.value == .relayLost)
        #expect(sink.ended == [.relayLost])
        #expect(a2.metrics.relayed("get", "peer_down") == 1)
        // A reply now has nowhere to go, and nothing is written.
        relayed.exchange.reply(reply(200, "late"))
        a2.owner.streams[0].stream.send(.framed, ByteBuffer(string: "late"))
        a2.loop.run()
        #expect(try mesh.channel(of: "a2", to: "a1").readOutbound(as: ByteBuffer.self) == nil)
    }

    @Test func aReplacedLinkFailsWhatWasRelayedOnIt() throws {
        let mesh = try mesh(["a1", "a2"])
        let a1 = mesh.nodes[0], a2 = mesh.nodes[1]
        let outcome = RelayOutcome()
        _ = a1.mesh.send(relayRequest(.get, a2.sid()), completion: outcome.completion)
        try mesh.settle()
        // A new link between the same two nodes replaces the old one.
        try mesh.connectAgain(a1, a2)
        #expect(outcome.failure == .peerDown)
        #expect(a2.owner.relayed.first?.ended.value == .relayLost)
    }

    // MARK: Caps

    @Test func theOwnerRefusesAFifthRequestOfOneSession() throws {
        let mesh = try mesh(["a1", "a2"])
        let a1 = mesh.nodes[0], a2 = mesh.nodes[1]
        let outcomes = (0..<5).map { _ in RelayOutcome() }
        for outcome in outcomes { _ = a1.mesh.send(relayRequest(.get, a2.sid()), completion: outcome.completion) }
        // Another session is not affected.
        let other = RelayOutcome()
        _ = a1.mesh.send(relayRequest(.get, a2.sid("fedcba9876543210")), completion: other.completion)
        try mesh.settle()
        #expect(a2.owner.relayed.count == 5)
        #expect(outcomes[4].reply == RelayReply(status: 400, contentType: "application/json",
                                                body: ByteBuffer(string: #"{"code":3,"message":"Bad request"}"#)))
        #expect(outcomes[0..<4].allSatisfy { $0.results.isEmpty })
        #expect(other.results.isEmpty)
        #expect(a2.metrics.relayed("get", "refused") == 1)
        #expect(a1.metrics.relayed("get", "error") == 1)

        // One answered makes room for the next.
        a2.owner.relayed[0].exchange.reply(reply(200, "1"))
        let sixth = RelayOutcome()
        _ = a1.mesh.send(relayRequest(.post, a2.sid(), body: "x"), completion: sixth.completion)
        try mesh.settle()
        #expect(a2.owner.relayed.count == 6)
        #expect(sixth.results.isEmpty)
    }

    @Test func theOwnerCapsStreamsWithRequestsAndClosesTheExcess() throws {
        let mesh = try mesh(["a1", "a2"])
        let a1 = mesh.nodes[0], a2 = mesh.nodes[1]
        for _ in 0..<4 { _ = a1.mesh.send(relayRequest(.get, a2.sid()), completion: RelayOutcome().completion) }
        let stream = StreamEvents()
        _ = a1.mesh.openStream(sid: a2.sid(), origin: nil, onFrame: stream.onFrame, onClose: stream.onClose)
        try mesh.settle()
        #expect(a2.owner.streams.isEmpty)
        #expect(stream.closes == [1013])
        #expect(a1.metrics.relayed("websocket", "refused") == 1)
        #expect(a2.metrics.relayed("websocket", "refused") == 1)
    }

    @Test func theRelayRefusesMoreThan4096InFlightOnALink() throws {
        let mesh = try mesh(["a1", "a2"])
        let a1 = mesh.nodes[0], a2 = mesh.nodes[1]
        var outcomes: [RelayOutcome] = []
        for index in 0..<(RelayRequestTable.capacity + 1) {
            let outcome = RelayOutcome()
            _ = a1.mesh.send(relayRequest(.get, a2.sid(padded(index))), completion: outcome.completion)
            outcomes.append(outcome)
        }
        a1.loop.run()
        #expect(outcomes.last?.failure == .refused)
        #expect(outcomes.dropLast().allSatisfy { $0.results.isEmpty })
        #expect(a1.metrics.relayed("get", "refused") == 1)
        try mesh.settle()
        #expect(a2.owner.relayed.count == RelayRequestTable.capacity)
    }

    @Test func theOwnerRefusesMoreThan4096InFlightFromOneLink() throws {
        let mesh = try mesh(["a1", "a2"])
        let a2 = mesh.nodes[1]
        // Written by hand (as a1 would, odd ids): a relay of ours stops at its own cap first.
        var frames = ByteBuffer()
        for index in 0...RelayOwnerTable.perLink {
            MeshFrameCodec.encode(.relayRequest(id: UInt64(2 * index + 1), request: relayRequest(.get, a2.sid(padded(index)))),
                                  into: &frames)
        }
        let channel = mesh.channel(of: "a2", to: "a1")
        try channel.writeInbound(frames)
        a2.loop.run()
        #expect(a2.owner.relayed.count == RelayOwnerTable.perLink)
        #expect(try writtenFrames(channel) == [.relayReply(id: UInt64(2 * RelayOwnerTable.perLink + 1), reply: .badRequest)])
        #expect(channel.isActive)
        #expect(a2.metrics.relayed("get", "refused") == 1)
    }

    // MARK: Streams

    @Test func aStreamCarriesFramesBothWaysAndTheOwnerClosesIt() throws {
        let mesh = try mesh()
        let a3 = mesh.nodes[2], a2 = mesh.nodes[1]
        let events = StreamEvents()
        let stream = try #require(a3.mesh.openStream(sid: a2.sid(), origin: "https://chat.example",
                                                     onFrame: events.onFrame, onClose: events.onClose))
        stream.send(.text, ByteBuffer(string: "2probe"))
        try mesh.settle()
        #expect(mesh.frames("a3", "a2") == [
            .relayRequest(id: 2, request: relayRequest(.webSocket, a2.sid())),
            .relayFrame(id: 2, kind: .text, payload: ByteBuffer(string: "2probe")),
        ])
        let owned = try #require(a2.owner.streams.first)
        #expect(owned.sid == a2.sid() && owned.origin == "https://chat.example" && owned.peer == "a3")
        #expect(owned.sink.received == ["text 2probe"])

        owned.stream.send(.framed, ByteBuffer(string: "\u{81}\u{06}3probe"))
        stream.send(.framed, ByteBuffer(string: "not from a relay")) // dropped: the owner would close the link
        stream.send(.text, ByteBuffer(string: "5"))
        stream.send(.binary, ByteBuffer(bytes: [4, 1, 2]))
        try mesh.settle()
        #expect(events.frames == ["framed \u{81}\u{06}3probe"])
        #expect(owned.sink.received == ["text 2probe", "text 5", "binary \u{04}\u{01}\u{02}"])

        owned.stream.close(code: 1000)
        try mesh.settle()
        #expect(events.closes == [1000])
        #expect(owned.sink.ended.isEmpty) // it closed the stream itself
        // Both ends forgot it: sends go nowhere.
        stream.send(.text, ByteBuffer(string: "after"))
        owned.stream.send(.framed, ByteBuffer(string: "after"))
        try mesh.settle()
        #expect(mesh.frames("a3", "a2").count == 4)
        #expect(mesh.frames("a2", "a3").count == 2)
        #expect(a2.metrics.relayed("websocket", "ok") == 1)
        #expect(a3.metrics.relayed("websocket", "ok") == 1)
        #expect(a2.mesh.relayLink(to: "a3")?.inbound.inFlight(sid: a2.sid()) == 0)
    }

    @Test func theRelayClosingAStreamEndsItOnTheOwner() throws {
        let mesh = try mesh()
        let a1 = mesh.nodes[0], a2 = mesh.nodes[1]
        let events = StreamEvents()
        let stream = try #require(a1.mesh.openStream(sid: a2.sid(), origin: nil, onFrame: events.onFrame, onClose: events.onClose))
        try mesh.settle()
        stream.close(code: 1001)
        try mesh.settle()
        #expect(mesh.frames("a1", "a2").last == .relayClose(id: 1, code: 1001))
        #expect(a2.owner.streams.first?.sink.ended == [.clientGone])
        #expect(events.closes.isEmpty)
        #expect(a2.mesh.relayLink(to: "a1")?.inbound.entries.isEmpty == true)
    }

    @Test func aStreamForAnUnknownSessionIsClosedWith4404() throws {
        let mesh = try mesh(["a1", "a2"])
        let a1 = mesh.nodes[0], a2 = mesh.nodes[1]
        a2.owner.refuseStreams = true
        let events = StreamEvents()
        _ = try #require(a1.mesh.openStream(sid: a2.sid(), origin: nil, onFrame: events.onFrame, onClose: events.onClose))
        try mesh.settle()
        #expect(events.closes == [4404])
        #expect(a1.metrics.relayed("websocket", "unknown_sid") == 1)
        #expect(a2.metrics.relayed("websocket", "unknown_sid") == 1)
    }

    // MARK: Bad frames

    /// Writes `frame` into a2's end of its link to a1, as if a1 had sent it.
    func inject(_ frame: MeshFrame, _ mesh: RelayTestMesh) throws {
        try mesh.channel(of: "a2", to: "a1").writeInbound(MeshFrameCodec.encode(frame))
    }

    @Test(arguments: [
        MeshFrame.relayReply(id: 6, reply: RelayReply(status: 200, contentType: "", body: ByteBuffer())), // never sent
        .relayReply(id: 1, reply: RelayReply(status: 200, contentType: "", body: ByteBuffer())), // a1's parity: a2 never sent it
        .relayFrame(id: 5, kind: .text, payload: ByteBuffer()), // a1's stream 5 was never opened
        .relayClose(id: 8, code: 1000), // a2's id 8 was never sent
        .relayRequest(id: 2, request: RelayedRequest(kind: .get, sid: "s", origin: nil, body: ByteBuffer())), // a2's parity
    ])
    func aRelayFrameForAnIdNeverUsedClosesOnlyThatLink(_ frame: MeshFrame) throws {
        let mesh = try mesh()
        let a2 = mesh.nodes[1]
        // a2 relays two requests to a1 (ids 2 and 4, even: it accepted a1's link).
        _ = a2.mesh.send(relayRequest(.get, mesh.nodes[0].sid()), completion: RelayOutcome().completion)
        let pending = RelayOutcome()
        _ = a2.mesh.send(relayRequest(.get, mesh.nodes[0].sid()), completion: pending.completion)
        try mesh.settle()
        try inject(frame, mesh)
        try mesh.settle()
        #expect(!mesh.channel(of: "a2", to: "a1").isActive)
        #expect(a2.metrics.violations == 1)
        #expect(pending.failure == .peerDown)
        // a2's other links carry on.
        #expect(mesh.channel(of: "a2", to: "a3").isActive)
        let viaA3 = RelayOutcome()
        _ = a2.mesh.send(relayRequest(.get, mesh.nodes[2].sid()), completion: viaA3.completion)
        try mesh.settle()
        mesh.nodes[2].owner.relayed.first?.exchange.reply(reply(200, "fine"))
        try mesh.settle()
        #expect(viaA3.reply == reply(200, "fine"))
    }

    @Test func aReusedRequestIdClosesTheLink() throws {
        let mesh = try mesh(["a1", "a2"])
        let a2 = mesh.nodes[1]
        try inject(.relayRequest(id: 3, request: relayRequest(.get, a2.sid())), mesh)
        try inject(.relayRequest(id: 1, request: relayRequest(.get, a2.sid())), mesh)
        try mesh.settle()
        #expect(a2.owner.relayed.count == 1)
        #expect(a2.owner.relayed.first?.ended.value == .relayLost)
        #expect(!mesh.channel(of: "a2", to: "a1").isActive)
        #expect(a2.metrics.violations == 1)
    }

    @Test func aMalformedRelayFrameClosesTheLinkAsABadFrame() throws {
        let mesh = try mesh(["a1", "a2"])
        try mesh.channel(of: "a2", to: "a1").writeInbound(buffer(hex("0000000C 0D 0000000000000001 07 0000")))
        try mesh.settle()
        #expect(!mesh.channel(of: "a2", to: "a1").isActive)
        #expect(mesh.frames("a2", "a1").last == .goodbye("bad frame: relay frame: request kind 7 (1 GET, 2 POST, 3 WebSocket)"))
    }

    @Test func framedBytesSentToTheOwnerCloseTheLink() throws {
        let mesh = try mesh(["a1", "a2"])
        let a1 = mesh.nodes[0], a2 = mesh.nodes[1]
        _ = a1.mesh.openStream(sid: a2.sid(), origin: nil, onFrame: { _, _ in }, onClose: { _ in })
        try mesh.settle()
        try inject(.relayFrame(id: 1, kind: .framed, payload: ByteBuffer(string: "x")), mesh)
        try mesh.settle()
        #expect(!mesh.channel(of: "a2", to: "a1").isActive)
        #expect(a2.owner.streams.first?.sink.received.isEmpty == true)
        #expect(a2.owner.streams.first?.sink.ended == [.relayLost])
    }
}

/// `index` as the 16 characters after a sid's tag.
func padded(_ index: Int) -> String {
    let digits = String(index)
    return String(repeating: "0", count: 16 - digits.count) + digits
}

extension MeshFanout {
    /// The relay state of the live link to `peer` (tests, on the mesh loop).
    func relayLink(to peer: String) -> MeshRelayLink? {
        peers[peer]?.link?.relay
    }
}
