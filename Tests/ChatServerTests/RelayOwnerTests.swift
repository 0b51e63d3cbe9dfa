import ChatCore
import ClusterConfig
import NIOCore
import Testing

@testable import ChatServer

/// The owner's side of the relay (docs/RELAY.md): requests another node relays here run as a
/// local client's would (session lookup, Origin, max_payload, the session's state machine),
/// and a lost relay drops what it held without ending the session.
struct RelayOwnerTests {
    private static let unknownSid = #"{"code":1,"message":"Session ID unknown"}"#

    private static func request(_ kind: RelayKind, _ sid: String, _ body: String = "", origin: String? = nil) -> RelayedRequest {
        RelayedRequest(kind: kind, sid: sid, origin: origin, body: ByteBuffer(string: body))
    }

    /// Relays one request to `owner` and lets the loop run.
    @discardableResult
    private static func relay(_ node: RelayTestNode, _ owner: RelayOwner, _ request: RelayedRequest) -> RecordedExchange {
        let recorded = RecordedExchange()
        owner.handleRelayed(request, from: "peer", exchange: recorded.exchange)
        node.settle()
        return recorded
    }

    @Test func aSessionThisNodeDoesNotHaveGetsTheUsual400() {
        let node = RelayTestNode()
        let owner = RelayOwner(server: node.server)
        for kind in [RelayKind.get, .post] {
            let recorded = Self.relay(node, owner, Self.request(kind, "nosuchsessionxxxxxxx", "40"))
            #expect(recorded.reply?.status == 400 && recorded.reply?.body == Self.unknownSid)
            #expect(recorded.reply?.contentType == "application/json")
        }
        #expect(owner.openRelayedStream(sid: "nosuchsessionxxxxxxx", origin: nil, from: "peer", stream: RecordingStream()) == nil)
    }

    @Test func anOriginOutsideTheAllowListIsForbiddenAsLocally() {
        var engine = EngineSettings()
        engine.allowedOrigins = ["https://chat.example"]
        let node = RelayTestNode(engine: engine)
        let owner = RelayOwner(server: node.server)
        let session = node.pollingSession()
        let refused = Self.relay(node, owner, Self.request(.post, session.sid, "40", origin: "https://evil.example"))
        #expect(refused.reply?.status == 403 && refused.reply?.body == #"{"code":4,"message":"Forbidden"}"#)
        let allowed = Self.relay(node, owner, Self.request(.post, session.sid, "40", origin: "https://chat.example"))
        #expect(allowed.reply?.status == 200 && allowed.reply?.body == "ok")
        #expect(owner.openRelayedStream(sid: session.sid, origin: "https://evil.example", from: "peer", stream: RecordingStream()) == nil)
    }

    @Test func relayedPostsAndGetsDriveTheSessionAsLocalOnes() {
        let node = RelayTestNode()
        let owner = RelayOwner(server: node.server)
        let session = node.pollingSession()
        let post = Self.relay(node, owner, Self.request(.post, session.sid, "40"))
        #expect(post.reply?.status == 200 && post.reply?.contentType == "text/html" && post.reply?.body == "ok")
        let get = Self.relay(node, owner, Self.request(.get, session.sid))
        #expect(get.reply?.status == 200 && get.reply?.contentType == "text/plain; charset=UTF-8")
        #expect(get.reply?.body.hasPrefix("40{\"sid\":") == true)
    }

    @Test func aPostOverThisNodesMaxPayloadIsRefusedWhateverTheRelayAllowed() {
        var engine = EngineSettings()
        engine.maxPayload = 64
        let node = RelayTestNode(engine: engine)
        let owner = RelayOwner(server: node.server)
        let session = node.pollingSession()
        let recorded = Self.relay(node, owner, Self.request(.post, session.sid, String(repeating: "4", count: 65)))
        #expect(recorded.reply?.status == 413)
        let bad = Self.relay(node, owner, RelayedRequest(kind: .post, sid: session.sid, origin: nil, body: ByteBuffer(bytes: [0xFF, 0xFE])))
        #expect(bad.reply?.status == 400 && bad.reply?.body == #"{"code":3,"message":"Bad request"}"#)
    }

    @Test func aHeldPollWhoseRelayIsLostIsDroppedAndTheSessionLivesOn() {
        let node = RelayTestNode()
        let owner = RelayOwner(server: node.server)
        let session = node.pollingSession()
        Self.relay(node, owner, Self.request(.post, session.sid, "40"))
        Self.relay(node, owner, Self.request(.get, session.sid))  // the CONNECT reply
        let held = Self.relay(node, owner, Self.request(.get, session.sid))
        #expect(held.all.isEmpty, "nothing to send: the poll is held")

        held.exchange.finish(.relayLost)
        node.settle()
        #expect(node.server.sessions.session(session.sid) != nil)
        Self.relay(node, owner, Self.request(.post, session.sid, #"42["join",{"username":"ann"}]"#))
        // Through another node: not an overlapping GET (which would end the session).
        let next = Self.relay(node, owner, Self.request(.get, session.sid))
        #expect(next.reply?.status == 200 && next.reply?.body.contains(#""event":"join""#) == true)
        #expect(held.all.isEmpty, "a lost relay's exchange is never answered")
    }

    @Test func aHeldPollWhoseClientWentAwayClosesTheSessionAsLocally() {
        let node = RelayTestNode()
        let owner = RelayOwner(server: node.server)
        let session = node.pollingSession()
        Self.relay(node, owner, Self.request(.post, session.sid, "40"))
        Self.relay(node, owner, Self.request(.get, session.sid))
        let held = Self.relay(node, owner, Self.request(.get, session.sid))
        held.exchange.finish(.clientGone)
        node.settle()
        #expect(node.server.sessions.session(session.sid) == nil)
        let after = Self.relay(node, owner, Self.request(.get, session.sid))
        #expect(after.reply?.body == Self.unknownSid)
    }

    @Test func aRelayedWebSocketProbesUpgradesAndCarriesTheSessionsFrames() throws {
        let node = RelayTestNode()
        let owner = RelayOwner(server: node.server)
        let session = node.pollingSession()
        Self.relay(node, owner, Self.request(.post, session.sid, "40"))
        Self.relay(node, owner, Self.request(.get, session.sid))
        let held = Self.relay(node, owner, Self.request(.get, session.sid))

        let stream = RecordingStream()
        let sink = try #require(owner.openRelayedStream(sid: session.sid, origin: nil, from: "peer", stream: stream))
        node.settle()
        sink.received(.text, ByteBuffer(string: "2probe"))
        node.settle()
        // Pre-framed WebSocket bytes, to be written to the client as they are.
        #expect(stream.frames.map(\.0) == [.framed])
        #expect(stream.frames.first.map { Array($0.1.readableBytesView) } == [0x81, 6] + Array("3probe".utf8))
        #expect(held.reply?.body == "6", "the held poll is released with a noop")

        sink.received(.text, ByteBuffer(string: "5"))
        sink.received(.text, ByteBuffer(string: #"42["join",{"username":"ann"}]"#))
        node.settle()
        #expect(stream.texts.last?.contains(#""event":"join""#) == true)
        let polled = Self.relay(node, owner, Self.request(.get, session.sid))
        #expect(polled.reply?.status == 400, "upgraded: polling is over, as locally")

        sink.ended(.clientGone)
        node.settle()
        #expect(node.server.sessions.session(session.sid) == nil, "its WebSocket closed: the session ends")
    }

    @Test func aRelayedPacketTheLocalPathWouldRefuseClosesTheStream() throws {
        var engine = EngineSettings()
        engine.maxPayload = 32
        let node = RelayTestNode(engine: engine)
        let owner = RelayOwner(server: node.server)
        let session = node.pollingSession()
        for (payload, code) in [(String(repeating: "x", count: 33), UInt16(1009)), ("9nonsense", 1002)] {
            let stream = RecordingStream()
            let sink = try #require(owner.openRelayedStream(sid: session.sid, origin: nil, from: "peer", stream: stream))
            node.settle()
            sink.received(.text, ByteBuffer(string: payload))
            node.settle()
            #expect(stream.closes == [code])
        }
        #expect(node.server.sessions.session(session.sid) != nil, "a failed probe leaves the polling session as it was")
    }

    @Test func aSecondRelayedWebSocketForAnUpgradingSessionIsClosed() throws {
        let node = RelayTestNode()
        let owner = RelayOwner(server: node.server)
        let session = node.pollingSession()
        let first = RecordingStream()
        _ = try #require(owner.openRelayedStream(sid: session.sid, origin: nil, from: "peer", stream: first))
        let second = RecordingStream()
        _ = try #require(owner.openRelayedStream(sid: session.sid, origin: nil, from: "peer", stream: second))
        node.settle()
        #expect(first.closes.isEmpty && second.closes == [1008])
    }
}
