import SocketIO
import Testing
@testable import ChatServer

/// The CONNECT auth payload as a recovering socket.io-client sends it, and the garbage a
/// forged client may send instead: each maps to one answer, none to a crash.
@Suite("RecoveryConnectRequest")
struct RecoveryConnectRequestTests {
    private func request(_ authJSON: String?) throws -> RecoveryConnectRequest {
        RecoveryConnectRequest(auth: try authJSON.map { try JSONParser.parse($0[...]) })
    }

    @Test func connectWithoutAuthIsANewSession() throws {
        #expect(try request(nil) == .fresh)
    }

    @Test func authWithoutPidIsANewSession() throws {
        #expect(try request(#"{"token":"abc"}"#) == .fresh)
        #expect(try request(#"{"offset":"1.2"}"#) == .fresh)
        #expect(try request(#"{}"#) == .fresh)
    }

    @Test func authThatIsNotAnObjectIsANewSession() throws {
        #expect(try request(#""pid""#) == .fresh)
        #expect(try request(#"["pid","x"]"#) == .fresh)
        #expect(try request("42") == .fresh)
        #expect(try request("null") == .fresh)
    }

    @Test func pidAndOffsetAskForRecovery() throws {
        #expect(try request(#"{"pid":"OpwnGGyIftMdOuf1AAAC","offset":"1a.5-zz.3"}"#)
            == .recover(pid: "OpwnGGyIftMdOuf1AAAC", offset: "1a.5-zz.3"))
    }

    @Test func pidMergedIntoTheApplicationsAuthStillAsksForRecovery() throws {
        #expect(try request(#"{"token":"t","pid":"p1","offset":"q"}"#) == .recover(pid: "p1", offset: "q"))
    }

    @Test func pidWithoutOffsetRecoversFromTheSessionStart() throws {
        #expect(try request(#"{"pid":"p1"}"#) == .recover(pid: "p1", offset: nil))
    }

    /// A garbage offset string is the store's to judge (it parses offsets); only its type is checked here.
    @Test func garbageOffsetStringIsPassedOnForTheStoreToRefuse() throws {
        #expect(try request(#"{"pid":"p1","offset":"%%%not an offset"}"#) == .recover(pid: "p1", offset: "%%%not an offset"))
    }

    @Test func pidThatIsNotAStringIsBadAuth() throws {
        #expect(try request(#"{"pid":12345}"#) == .badAuth)
        #expect(try request(#"{"pid":null,"offset":"1.1"}"#) == .badAuth)
        #expect(try request(#"{"pid":{"sid":"x"}}"#) == .badAuth)
        #expect(try request(#"{"pid":["a"]}"#) == .badAuth)
    }

    @Test func offsetThatIsNotAStringIsBadOffset() throws {
        #expect(try request(#"{"pid":"p1","offset":17}"#) == .badOffset)
        #expect(try request(#"{"pid":"p1","offset":null}"#) == .badOffset)
        #expect(try request(#"{"pid":"p1","offset":["1.1"]}"#) == .badOffset)
    }
}
