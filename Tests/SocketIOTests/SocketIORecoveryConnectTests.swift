import EngineIO
import Testing
@testable import SocketIO

/// The CONNECT exchange of connection-state recovery (socket.io 4.6+), as the session codes it.
@Suite("SocketIOServerSession recovery connect")
struct SocketIORecoveryConnectTests {
    @Test func acceptConnectWithPidAnswersSidThenPid() throws {
        var session = SocketIOServerSession()
        _ = try session.receive(.text("0"))
        let answer = session.acceptConnect(namespace: "/", sid: "b60RUsn3RLVNEjvtAAAB", pid: "OpwnGGyIftMdOuf1AAAC")
        #expect(EnginePacket.message(answer).encodedText() == #"40{"sid":"b60RUsn3RLVNEjvtAAAB","pid":"OpwnGGyIftMdOuf1AAAC"}"#)
        #expect(session.isConnected(to: "/"))
    }

    @Test func acceptConnectWithPidOnOtherNamespaceNamesIt() {
        var session = SocketIOServerSession(namespaces: ["/", "/admin"])
        #expect(session.acceptConnect(namespace: "/admin", sid: "s", pid: "p") == #"0/admin,{"sid":"s","pid":"p"}"#)
        #expect(session.isConnected(to: "/admin") && !session.isConnected(to: "/"))
    }

    @Test func recoveringConnectCarriesPidAndOffsetToTheApplication() throws {
        var session = SocketIOServerSession()
        let input = try session.receive(.text(#"0{"pid":"OpwnGGyIftMdOuf1AAAC","offset":"Q8r4XWU"}"#))
        #expect(input == .connect(namespace: "/", auth: .object([
            ("pid", .string("OpwnGGyIftMdOuf1AAAC")), ("offset", .string("Q8r4XWU")),
        ])))
        #expect(!session.hasConnections)
    }

    /// Until the application answers, the namespace is not connected: events are dropped, not
    /// handed on (a recovering session ignores the client until its session is restored).
    @Test func eventsBeforeTheConnectAnswerAreDropped() throws {
        var session = SocketIOServerSession()
        _ = try session.receive(.text(#"0{"pid":"p","offset":"o"}"#))
        #expect(try session.receive(.text(#"2["say",{"text":"early"}]"#)) == nil)
        #expect(try session.receive(.text("1")) == nil)
    }

    @Test func connectAfterAcceptWithPidIsIgnored() throws {
        var session = SocketIOServerSession()
        _ = try session.receive(.text("0"))
        _ = session.acceptConnect(namespace: "/", sid: "s", pid: "p")
        #expect(try session.receive(.text(#"0{"pid":"p","offset":"x"}"#)) == nil)
    }
}
