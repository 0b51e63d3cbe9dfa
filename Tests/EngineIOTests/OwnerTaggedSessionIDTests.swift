import Testing
@testable import EngineIO

/// Engine.IO sids made with an owner tag (docs/RELAY.md): the tag, then 96 random bits.
@Suite("SessionID with an owner tag")
struct OwnerTaggedSessionIDTests {
    private static let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

    @Test func isTwentyBase64URLCharactersStartingWithTheTag() {
        for tag in ["AAAA", "a1-_", "Zz09"] {
            for _ in 0..<500 {
                let sid = SessionID.make(ownerTag: tag)
                #expect(sid.utf8.count == 20)
                #expect(sid.hasPrefix(tag))
                #expect(sid.allSatisfy { Self.alphabet.contains($0) }, "\(sid)")
            }
        }
    }

    @Test func ownerTagReadsBackTheTagItWasMadeWith() {
        for tag in ["AAAA", "-_-_", "q7Xk"] {
            let sid = SessionID.make(ownerTag: tag)
            #expect(SessionID.ownerTag(of: sid) == Substring(tag))
        }
    }

    @Test func idsWithOneTagAreUniqueOverTenThousandDraws() {
        let sids = (0..<10_000).map { _ in SessionID.make(ownerTag: "Ab3_") }
        #expect(Set(sids).count == 10_000)
    }

    @Test func theRandomPartUsesTheWholeAlphabet() {
        // 160,000 random characters: each of the 64 appears with overwhelming probability, and
        // none of standard base64's `+`, `/` or padding does.
        let randomParts = (0..<10_000).map { _ in SessionID.make(ownerTag: "AAAA").dropFirst(4) }
        let characters = Set(randomParts.joined())
        #expect(characters.count == 64)
        #expect(characters.isSubset(of: Self.alphabet))
    }

    @Test func untaggedIDsKeepTheirShape() {
        // Socket.IO's sid and recovery's pid: 20 random characters, as before.
        let sid = SessionID.make()
        #expect(sid.utf8.count == 20)
        #expect(sid.allSatisfy { Self.alphabet.contains($0) })
    }

    @Test func ownerTagIsNilForAnythingNotShapedLikeAnOwnedSid() {
        #expect(SessionID.ownerTag(of: "") == nil)
        #expect(SessionID.ownerTag(of: "AAAA") == nil)
        #expect(SessionID.ownerTag(of: String(repeating: "A", count: 19)) == nil)
        #expect(SessionID.ownerTag(of: String(repeating: "A", count: 21)) == nil)
        #expect(SessionID.ownerTag(of: "AAAA+AAAAAAAAAAAAAAA") == nil)  // standard base64, not url
        #expect(SessionID.ownerTag(of: "AAAA=AAAAAAAAAAAAAAA") == nil)
        #expect(SessionID.ownerTag(of: "AAAA AAAAAAAAAAAAAAA") == nil)
        #expect(SessionID.ownerTag(of: "AAAAéAAAAAAAAAAAAAA") == nil)  // 20 bytes, not ASCII
        #expect(SessionID.ownerTag(of: "AAAAAAAAAAAAAAAAAAAA") == "AAAA")
    }
}
