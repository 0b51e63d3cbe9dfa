import Testing
@testable import SocketIO

@Suite("JSONParser")
struct JSONParserTests {
    private func parse(_ text: String, maxDepth: Int = JSONParser.defaultMaxDepth) throws -> JSONValue {
        try JSONParser.parse(Substring(text), maxDepth: maxDepth)
    }

    private func failure(_ text: String, maxDepth: Int = JSONParser.defaultMaxDepth) -> JSONParseError? {
        do {
            _ = try JSONParser.parse(Substring(text), maxDepth: maxDepth)
            return nil
        } catch {
            return error
        }
    }

    private func nested(_ depth: Int, open: String = "[", close: String = "]") -> String {
        String(repeating: open, count: depth) + String(repeating: close, count: depth)
    }

    // MARK: values

    @Test func literalsParse() throws {
        #expect(try parse("null") == .null)
        #expect(try parse("true") == .bool(true))
        #expect(try parse("false") == .bool(false))
    }

    @Test(arguments: [
        ("0", 0.0), ("-0", -0.0), ("42", 42), ("-17", -17), ("1.5", 1.5), ("-0.25", -0.25),
        ("1e3", 1000), ("1E3", 1000), ("1e+2", 100), ("2.5e-3", 0.0025), ("0.5E-1", 0.05),
        ("9007199254740991", 9_007_199_254_740_991), ("1e400", .infinity),
    ])
    func numbersParse(text: String, value: Double) throws {
        #expect(try parse(text) == .number(value))
    }

    @Test func negativeZeroKeepsItsSign() throws {
        guard case .number(let zero) = try parse("-0") else { Issue.record("not a number"); return }
        #expect(zero.sign == .minus)
    }

    @Test func stringsParse() throws {
        #expect(try parse(#""""#) == .string(""))
        #expect(try parse(#""abc""#) == .string("abc"))
        #expect(try parse("\"héllo 👋 日本\"") == .string("héllo 👋 日本"))
        #expect(try parse("\"\u{7F}\u{2028}\"") == .string("\u{7F}\u{2028}"))
    }

    @Test(arguments: ["\u{80}", "\u{7FF}", "\u{800}", "é", "日", "\u{FFFD}", "\u{FFFF}", "\u{10000}", "👋", "\u{10FFFF}",
                      "👨‍👩‍👧", "e\u{301}", "éé", "日本語", "a👋b", "\u{1F1EB}\u{1F1F7}"])
    func utf8SequencesOfEveryLengthParse(text: String) throws {
        // Each multi-byte sequence must be stepped over whole, continuation bytes included.
        #expect(try parse("\"" + text + "\"") == .string(text))
        #expect(try parse("[\"" + text + "\",\"" + text + "\"]") == .array([.string(text), .string(text)]))
        #expect(try parse("\"\\n" + text + "\\t\"") == .string("\n" + text + "\t"))
    }

    @Test func nonASCIIObjectKeysParse() throws {
        #expect(try parse(#"{"clé":"valeur","日":1}"#) == .object([("clé", .string("valeur")), ("日", .number(1))]))
    }

    @Test func everyEscapeDecodes() throws {
        let text = #""\"\\\/\b\f\n\r\t\u0041\u00e9\u00E9\u65e5\ud83d\udc4b""#
        #expect(try parse(text) == .string("\"\\/\u{08}\u{0C}\n\r\tAéé日👋"))
    }

    @Test func escapesAndRawTextMixInOneString() throws {
        #expect(try parse(#""a\nb\"c\u0000d""#) == .string("a\nb\"c\u{0}d"))
    }

    @Test func arraysAndObjectsParse() throws {
        #expect(try parse("[]") == .array([]))
        #expect(try parse("{}") == .object([]))
        #expect(try parse(#"[1,"two",null,true,[],{}]"#)
            == .array([.number(1), .string("two"), .null, .bool(true), .array([]), .object([])]))
        #expect(try parse(#"{"a":1,"b":[{"c":"d"}]}"#)
            == .object([("a", .number(1)), ("b", .array([.object([("c", .string("d"))])]))]))
    }

    @Test func whitespaceIsAllowedBetweenTokens() throws {
        let text = " \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" :\nnull } \n"
        #expect(try parse(text) == .object([("a", .array([.number(1), .number(2)])), ("b", .null)]))
    }

    @Test func objectKeysKeepTheirOrder() throws {
        let value = try parse(#"{"z":1,"a":2,"m":3}"#)
        guard case .object(let members) = value else { Issue.record("not an object"); return }
        #expect(members.map(\.0) == ["z", "a", "m"])
    }

    @Test func duplicateKeysKeepTheLastValueAtTheFirstPosition() throws {
        // As JSON.parse: {"a":1,"b":2,"a":3} becomes {a:3,b:2}.
        let value = try parse(#"{"a":1,"b":2,"a":3}"#)
        #expect(value == .object([("a", .number(3)), ("b", .number(2))]))
        #expect(value["a"] == .number(3))
    }

    @Test func subscriptReadsObjectMembersOnly() throws {
        let value = try parse(#"{"k":"v"}"#)
        #expect(value["k"]?.stringValue == "v")
        #expect(value["missing"] == nil)
        #expect(try parse("[1]")["k"] == nil)
    }

    // MARK: nesting limit

    @Test func nestingUpToTheLimitParses() throws {
        #expect(throws: Never.self) { try parse(nested(32)) }
        #expect(throws: Never.self) { try parse(String(repeating: #"{"a":"#, count: 32) + "1" + String(repeating: "}", count: 32)) }
        #expect(throws: Never.self) { try parse(nested(5), maxDepth: 5) }
    }

    @Test func nestingBeyondTheLimitIsRejected() {
        #expect(failure(nested(33))?.reason == "nesting deeper than 32")
        #expect(failure(nested(6), maxDepth: 5)?.reason == "nesting deeper than 5")
        #expect(failure(String(repeating: #"{"a":"#, count: 33) + "1" + String(repeating: "}", count: 33))?.reason
            == "nesting deeper than 32")
        #expect(failure(String(repeating: "[", count: 100_000))?.reason == "nesting deeper than 32")
    }

    @Test func mixedNestingCountsEveryLevel() {
        let text = String(repeating: #"[{"a":"#, count: 17) + "1" + String(repeating: "}]", count: 17)
        #expect(failure(text)?.reason == "nesting deeper than 32")
    }

    // MARK: errors

    @Test(arguments: [
        ("", "unexpected end of input", 0),
        ("   ", "unexpected end of input", 3),
        ("1 2", "trailing characters", 2),
        ("{}x", "trailing characters", 2),
        ("[]]", "trailing characters", 2),
        (#""a""b""#, "trailing characters", 3),
        ("nullx", "trailing characters", 4),
        ("01", "trailing characters", 1),
        ("-01", "trailing characters", 2),
        ("00", "trailing characters", 1),
        ("[01]", "expected ',' or ']'", 2),
    ])
    func trailingCharactersAndLeadingZerosAreRejected(text: String, reason: String, offset: Int) {
        #expect(failure(text) == JSONParseError(offset: offset, reason: reason))
    }

    @Test(arguments: [
        ("-", "invalid number"),
        ("-a", "invalid number"),
        ("- 1", "invalid number"),
        ("1.", "invalid number"),
        ("1.e5", "invalid number"),
        ("1e", "invalid number"),
        ("1e+", "invalid number"),
        ("[-]", "invalid number"),
        (".5", "unexpected character"),
        ("+1", "unexpected character"),
        ("NaN", "unexpected character"),
        ("Infinity", "unexpected character"),
        ("0x10", "trailing characters"),
    ])
    func malformedNumbersAreRejected(text: String, reason: String) {
        #expect(failure(text)?.reason == reason)
    }

    @Test(arguments: [
        (#""\x""#, "invalid escape"),
        (#""\a""#, "invalid escape"),
        (#""\U0041""#, "invalid escape"),
        (#""\'""#, "invalid escape"),
        (#""\u12""#, #"short \u escape"#),
        (#""\u12G4""#, #"invalid \u escape"#),
        (#""\u-123""#, #"invalid \u escape"#),
        ("\"\\", "unterminated escape"),
    ])
    func badEscapesAreRejected(text: String, reason: String) {
        #expect(failure(text)?.reason == reason)
    }

    @Test(arguments: [
        #""\ud800""#,          // high surrogate alone
        #""\ud83dx""#,         // high surrogate before plain text
        #""\ud800\u0041""#,    // high surrogate before a non-surrogate escape
        #""\ud800\ud800""#,    // two high surrogates
        #""\udc00""#,          // low surrogate alone
        #""\udfff\ud800""#,    // reversed pair
        #""\ud800\n""#,        // high surrogate before another escape
    ])
    func unpairedSurrogatesAreRejected(text: String) {
        #expect(failure(text)?.reason == "unpaired surrogate")
    }

    @Test(arguments: ["\"a\nb\"", "\"\u{0}\"", "\"\t\"", "\"\r\"", "\"\u{1F}\"", "[\"\u{1E}\"]"])
    func rawControlCharactersInStringsAreRejected(text: String) {
        #expect(failure(text)?.reason == "control character in string")
    }

    @Test(arguments: [#""abc"#, #"""#, #"["abc"#, #"{"a"#, #""abc\""#])
    func unterminatedStringIsRejected(text: String) {
        #expect(failure(text)?.reason == "unterminated string")
    }

    @Test(arguments: [
        ("tru", "unexpected end of input"),
        ("trux", "invalid literal"),
        ("nul", "unexpected end of input"),
        ("nulL", "invalid literal"),
        ("True", "unexpected character"),
        ("falsy", "invalid literal"),
        ("undefined", "unexpected character"),
        ("'a'", "unexpected character"),
        ("[", "unexpected end of input"),
        ("[1", "unexpected end of input"),
        ("[1,", "unexpected end of input"),
        ("[1,]", "unexpected character"),
        ("[,1]", "unexpected character"),
        ("[1 2]", "expected ',' or ']'"),
        ("{", "expected object key"),
        ("{a:1}", "expected object key"),
        (#"{"a":1,}"#, "expected object key"),
        ("{1:1}", "expected object key"),
        (#"{"a" 1}"#, "expected ':'"),
        (#"{"a"}"#, "expected ':'"),
        (#"{"a":}"#, "unexpected character"),
        (#"{"a":1"#, "unexpected end of input"),
        (#"{"a":1 "b":2}"#, "expected ',' or '}'"),
        (#"{"a":1]"#, "expected ',' or '}'"),
    ])
    func structuralErrorsAreRejected(text: String, reason: String) {
        #expect(failure(text)?.reason == reason)
    }

    @Test func errorOffsetPointsAtTheDefect() {
        #expect(failure(#"{"a":[1,2,x]}"#) == JSONParseError(offset: 10, reason: "unexpected character"))
        #expect(failure("[1,]") == JSONParseError(offset: 3, reason: "unexpected character"))
        #expect(failure("[\"é\u{1}\"]")?.offset == 4)
    }

    @Test func errorDescriptionNamesOffsetAndReason() {
        #expect(JSONParseError(offset: 3, reason: "invalid escape").description == "invalid JSON at byte 3: invalid escape")
    }

    @Test func invalidUTF8NeverReachesTheParserRaw() throws {
        // The parser reads a Swift string, which is valid UTF-8 by construction: bytes that are not
        // (a lone continuation byte, an overlong, an encoded surrogate) are repaired to U+FFFD
        // before parsing, so they come through as the replacement character, never as raw bytes.
        for bytes: [UInt8] in [[0x80], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xE6, 0x97]] {
            let text = String(decoding: [UInt8(ascii: "\"")] + bytes + [UInt8(ascii: "\"")], as: UTF8.self)
            guard case .string(let value) = try parse(text) else { Issue.record("not a string"); continue }
            #expect(value.unicodeScalars.allSatisfy { $0 == "\u{FFFD}" })
            #expect(!value.isEmpty)
        }
    }

    @Test func substringInputIsParsedFromItsOwnBounds() throws {
        let frame = #"2["say",{"text":"hi"}]"#
        let payload = frame.dropFirst()
        #expect(try JSONParser.parse(payload) == .array([.string("say"), .object([("text", .string("hi"))])]))
    }
}
