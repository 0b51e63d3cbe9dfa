import EngineIO
import Testing
@testable import SocketIO

@Suite("SocketIOServerSession")
struct SocketIOServerSessionTests {
    /// Feeds one Engine.IO text message (a Socket.IO packet) to the session.
    private func send(_ session: inout SocketIOServerSession, _ text: String) throws -> SocketIOServerSession.Input? {
        try session.receive(.text(text))
    }

    private func connected(_ namespaces: Set<String> = ["/"]) throws -> SocketIOServerSession {
        var session = SocketIOServerSession(namespaces: namespaces)
        for namespace in namespaces.sorted() {
            _ = try session.receive(.text(namespace == "/" ? "0" : "0\(namespace),"))
            _ = session.acceptConnect(namespace: namespace, sid: "sid-\(namespace)")
        }
        return session
    }

    @Test func connectToTheMainNamespaceAsksTheApplication() throws {
        var session = SocketIOServerSession()
        let input = try send(&session, "0")
        #expect(input == .connect(namespace: "/", auth: nil))
        #expect(!session.hasConnections)
    }

    @Test func connectCarriesTheAuthObject() throws {
        var session = SocketIOServerSession()
        let input = try send(&session, #"0{"token":"x"}"#)
        #expect(input == .connect(namespace: "/", auth: .object([("token", .string("x"))])))
    }

    @Test func acceptConnectAnswersWithTheSocketSid() throws {
        var session = SocketIOServerSession()
        _ = try send(&session, "0")
        let answer = session.acceptConnect(namespace: "/", sid: "0ewkIBceVtYY-by1AAAD")
        #expect(answer == #"0{"sid":"0ewkIBceVtYY-by1AAAD"}"#)
        #expect(EnginePacket.message(answer).encodedText() == #"40{"sid":"0ewkIBceVtYY-by1AAAD"}"#)
        #expect(session.isConnected(to: "/") && session.hasConnections)
    }

    @Test func acceptConnectOnOtherNamespaceNamesIt() {
        var session = SocketIOServerSession(namespaces: ["/", "/admin"])
        #expect(session.acceptConnect(namespace: "/admin", sid: "abc") == #"0/admin,{"sid":"abc"}"#)
        #expect(session.isConnected(to: "/admin") && !session.isConnected(to: "/"))
    }

    @Test func connectToUnknownNamespaceIsRefusedLikeTheNodeServer() throws {
        var session = SocketIOServerSession()
        let input = try send(&session, "0/admin,")
        #expect(input == .reply(#"4/admin,{"message":"Invalid namespace"}"#))
        guard case .reply(let text)? = input else { return }
        #expect(EnginePacket.message(text).encodedText() == #"44/admin,{"message":"Invalid namespace"}"#)
        #expect(!session.hasConnections)
    }

    @Test func servedSecondNamespaceConnects() throws {
        var session = SocketIOServerSession(namespaces: ["/", "/admin"])
        let input = try send(&session, #"0/admin,{"k":1}"#)
        #expect(input == .connect(namespace: "/admin", auth: .object([("k", .number(1))])))
    }

    @Test func repeatedConnectToAConnectedNamespaceIsIgnored() throws {
        var session = try connected()
        let input = try send(&session, "0")
        #expect(input == nil)
        #expect(session.isConnected(to: "/"))
    }

    @Test func eventsBeforeConnectAreIgnored() throws {
        var session = SocketIOServerSession()
        let beforeAnything = try send(&session, #"2["say",{"text":"hi"}]"#)
        #expect(beforeAnything == nil)
        _ = try send(&session, "0")
        let beforeAccept = try send(&session, #"2["say",{"text":"hi"}]"#)
        #expect(beforeAccept == nil)
    }

    @Test func eventsAfterConnectAreDelivered() throws {
        var session = try connected()
        let join = try send(&session, #"2["join",{"username":"carol"}]"#)
        #expect(join == .event(name: "join", arguments: [.object([("username", .string("carol"))])], ackID: nil))
        let say = try send(&session, #"2["say",{"text":"hi"}]"#)
        #expect(say == .event(name: "say", arguments: [.object([("text", .string("hi"))])], ackID: nil))
        let bare = try send(&session, #"2["ping"]"#)
        #expect(bare == .event(name: "ping", arguments: [], ackID: nil))
    }

    @Test func eventAckIDsArePassedUp() throws {
        var session = try connected()
        let input = try send(&session, #"212["say",{}]"#)
        #expect(input == .event(name: "say", arguments: [.object([])], ackID: 12))
        let zero = try send(&session, #"20["say"]"#)
        #expect(zero == .event(name: "say", arguments: [], ackID: 0))
    }

    @Test func eventsToANamespaceNotConnectedAreIgnored() throws {
        var session = try connected(["/", "/admin"]) // both served
        _ = try send(&session, "1/admin,")
        let input = try send(&session, #"2/admin,["say",{}]"#)
        #expect(input == nil)
        let main = try send(&session, #"2["say",{}]"#)
        #expect(main == .event(name: "say", arguments: [.object([])], ackID: nil))
    }

    @Test func eventOnASecondNamespaceIsDeliveredWhenConnected() throws {
        var session = try connected(["/", "/admin"])
        let input = try send(&session, #"2/admin,4["kick","bob"]"#)
        #expect(input == .event(name: "kick", arguments: [.string("bob")], ackID: 4))
    }

    @Test func eventWithANumericNameIsIgnored() throws {
        var session = try connected()
        let input = try send(&session, #"2[1,"x"]"#)
        #expect(input == nil)
    }

    @Test func binaryEventIsReassembledBeforeDelivery() throws {
        var session = try connected()
        let header = try send(&session, #"51-3["upload",{"name":"a"},{"_placeholder":true,"num":0}]"#)
        #expect(header == nil)
        let input = try session.receive(.binary([0xCA, 0xFE]))
        #expect(input == .event(name: "upload", arguments: [.object([("name", .string("a"))]), .binary([0xCA, 0xFE])], ackID: 3))
    }

    @Test func binaryEventWithSeveralAttachmentsWaitsForTheLast() throws {
        var session = try connected()
        _ = try send(&session, #"52-["up",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
        let first = try session.receive(.binary([1]))
        #expect(first == nil)
        let second = try session.receive(.binary([2]))
        #expect(second == .event(name: "up", arguments: [.binary([1]), .binary([2])], ackID: nil))
    }

    @Test func binaryEventBeforeConnectIsConsumedAndIgnored() throws {
        var session = SocketIOServerSession()
        _ = try send(&session, #"51-["up",{"_placeholder":true,"num":0}]"#)
        let input = try session.receive(.binary([1]))
        #expect(input == nil)
        let next = try send(&session, "0")
        #expect(next == .connect(namespace: "/", auth: nil))
    }

    @Test func disconnectLeavesTheNamespace() throws {
        var session = try connected()
        let input = try send(&session, "1")
        #expect(input == .disconnect(namespace: "/"))
        #expect(!session.hasConnections)
        let after = try send(&session, #"2["say",{"text":"hi"}]"#)
        #expect(after == nil)
        let again = try send(&session, "1")
        #expect(again == nil)
    }

    @Test func disconnectFromANamespaceNeverConnectedIsIgnored() throws {
        var session = SocketIOServerSession()
        let input = try send(&session, "1")
        #expect(input == nil)
    }

    @Test func reconnectAfterDisconnectIsAskedAgain() throws {
        var session = try connected()
        _ = try send(&session, "1")
        let input = try send(&session, "0")
        #expect(input == .connect(namespace: "/", auth: nil))
    }

    @Test(arguments: [#"312[{"ok":true}]"#, #"61-1[{"_placeholder":true,"num":0}]"#, #"4{"message":"x"}"#])
    func acksAndConnectErrorsFromTheClientAreIgnored(text: String) throws {
        var session = try connected()
        let input = try send(&session, text)
        if text.hasPrefix("6") {
            #expect(input == nil)
            let afterAttachment = try session.receive(.binary([9]))
            #expect(afterAttachment == nil)
        } else {
            #expect(input == nil)
        }
    }

    @Test func malformedPacketsThrowTheCodecError() throws {
        var session = try connected()
        #expect(throws: SocketIOError.unknownPacketType("7")) { try session.receive(.text("7")) }
        #expect(throws: SocketIOError.emptyPacket) { try session.receive(.text("")) }
        #expect(throws: SocketIOError.invalidPayload(.event)) { try session.receive(.text("2{}")) }
    }

    @Test func binaryOutOfSequenceThrows() throws {
        var session = try connected()
        #expect(throws: SocketIOError.unexpectedBinaryAttachment) { try session.receive(.binary([1])) }
        _ = try send(&session, #"51-["up",{"_placeholder":true,"num":0}]"#)
        #expect(throws: SocketIOError.expectedBinaryAttachment) { try session.receive(.text(#"2["say"]"#)) }
    }

    @Test func connectErrorCarriesOptionalData() {
        #expect(SocketIOServerSession.connectError(namespace: "/", message: "Not authorized")
            == #"4{"message":"Not authorized"}"#)
        #expect(SocketIOServerSession.connectError(namespace: "/admin", message: "no", data: .object([("code", .number(42))]))
            == #"4/admin,{"message":"no","data":{"code":42}}"#)
    }
}
