import Testing
@testable import EngineIO

@Suite("EngineHandshake and SessionID")
struct EngineHandshakeTests {
    @Test func pollingOpenPacketMatchesTheRecordedFrame() {
        let handshake = EngineHandshake(sid: "rICOyfMeeIzVQmwUAAAC", upgrades: ["websocket"],
                                        pingIntervalMs: 25000, pingTimeoutMs: 20000, maxPayload: 1_000_000)
        #expect(handshake.openPacket.type == .open)
        #expect(handshake.openPacket.encodedText()
            == #"0{"sid":"rICOyfMeeIzVQmwUAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#)
    }

    @Test func websocketOpenPacketHasEmptyUpgrades() {
        let handshake = EngineHandshake(sid: "AS320wcJEMc0fjKDAAAC", upgrades: [],
                                        pingIntervalMs: 25000, pingTimeoutMs: 20000, maxPayload: 1_000_000)
        #expect(handshake.openPacket.encodedText()
            == #"0{"sid":"AS320wcJEMc0fjKDAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#)
    }

    @Test func handshakeJSONCarriesConfiguredTimings() {
        let handshake = EngineHandshake(sid: "s", upgrades: ["websocket", "webtransport"],
                                        pingIntervalMs: 300, pingTimeoutMs: 200, maxPayload: 100)
        #expect(handshake.json
            == #"{"sid":"s","upgrades":["websocket","webtransport"],"pingInterval":300,"pingTimeout":200,"maxPayload":100}"#)
    }

    @Test func openPacketPollsAsTheSameText() {
        let handshake = EngineHandshake(sid: "x", upgrades: [], pingIntervalMs: 1, pingTimeoutMs: 2, maxPayload: 3)
        #expect(PollingPayload.encode([handshake.openPacket]) == "0" + handshake.json)
    }

    @Test func sessionIDIsTwentyCharactersOfBase64URL() {
        let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        for _ in 0..<1000 {
            let sid = SessionID.make()
            #expect(sid.count == 20)
            #expect(sid.utf8.count == 20)
            #expect(sid.allSatisfy { alphabet.contains($0) })
        }
    }

    @Test func sessionIDsAreUniqueOverTenThousandDraws() {
        let sids = (0..<10_000).map { _ in SessionID.make() }
        #expect(Set(sids).count == 10_000)
    }

    @Test func sessionIDsUseTheURLSafeCharactersInsteadOfPlusAndSlash() {
        // 200,000 random characters: each of the 64 appears with overwhelming probability.
        let characters = Set((0..<10_000).map { _ in SessionID.make() }.joined())
        #expect(characters.contains("-"))
        #expect(characters.contains("_"))
        #expect(!characters.contains("+"))
        #expect(!characters.contains("/"))
        #expect(!characters.contains("="))
        #expect(characters.count == 64)
    }
}
