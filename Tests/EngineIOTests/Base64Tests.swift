import Testing
@testable import EngineIO

@Suite("Base64")
struct Base64Tests {
    /// RFC 4648 section 10 test vectors.
    @Test(arguments: [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ])
    func encodesAndDecodesTheRFC4648Vectors(plain: String, encoded: String) {
        #expect(Base64.encode(Array(plain.utf8)) == encoded)
        #expect(Base64.decode(Array(encoded.utf8)) == Array(plain.utf8))
    }

    @Test func usesPlusAndSlashOfTheStandardAlphabet() {
        #expect(Base64.encode([0xFB, 0xFF]) == "+/8=")
        #expect(Base64.encode([0xFF, 0xFF, 0xFF]) == "////")
        #expect(Base64.encode([0x00, 0x00, 0x00]) == "AAAA")
        #expect(Base64.decode(Array("+/8=".utf8)) == [0xFB, 0xFF])
    }

    @Test func everyByteValueAndEveryTailLengthRoundTrips() {
        let all = (0...255).map { UInt8($0) }
        #expect(Base64.decode(Array(Base64.encode(all).utf8)) == all)
        for length in 0...9 {
            let bytes = Array(all.reversed().prefix(length))
            let text = Base64.encode(bytes)
            #expect(text.utf8.count == (length + 2) / 3 * 4)
            #expect(Base64.decode(Array(text.utf8)) == bytes)
        }
    }

    @Test(arguments: ["Z", "Zg", "Zg=", "Zm9vY", "Zm9vYg=", "Zm9vYg==="])
    func inputWhoseLengthIsNotAMultipleOfFourIsRejected(text: String) {
        #expect(Base64.decode(Array(text.utf8)) == nil)
    }

    @Test(arguments: ["====", "Z===", "Z=g=", "Zg=a", "Zg==Zm9v", "Zm9=Zm9v", "Zm8=Zm8="])
    func misplacedPaddingIsRejected(text: String) {
        #expect(Base64.decode(Array(text.utf8)) == nil)
    }

    @Test(arguments: ["Zm9*", "Zm9-", "Zm9_", "Zm 9", "Zm9\n", "Zm9\r", "Zm9.", "Zm9\u{0}"])
    func charactersOutsideTheAlphabetAreRejected(text: String) {
        #expect(Base64.decode(Array(text.utf8)) == nil)
    }

    @Test func highBytesAreRejectedNotIndexedOutOfRange() {
        #expect(Base64.decode([0x5A, 0x6D, 0x39, 0xFF]) == nil)
        #expect(Base64.decode([0x80, 0x80, 0x80, 0x80]) == nil)
    }
}
