import Testing
@testable import MeshFanout

/// The handshake's HMAC-SHA256 (OpenSSL's libcrypto) against RFC 4231's test vectors.
@Suite struct MeshHMACTests {
    private func hex(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    @Test func rfc4231Case1() {
        let code = MeshHandshake.hmacSHA256(key: [UInt8](repeating: 0x0b, count: 20), message: Array("Hi There".utf8))
        #expect(hex(code) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    }

    @Test func rfc4231Case2ShortKey() {
        let code = MeshHandshake.hmacSHA256(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8))
        #expect(hex(code) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func rfc4231Case6KeyLongerThanTheBlock() {
        let code = MeshHandshake.hmacSHA256(key: [UInt8](repeating: 0xaa, count: 131),
                                            message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8))
        #expect(hex(code) == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    @Test func emptyKeyIsAnOrdinaryKey() {
        // HMAC-SHA256("", "") from the RFC 2104 construction.
        #expect(hex(MeshHandshake.hmacSHA256(key: [], message: [])) == "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
    }
}
