import Testing
@testable import SocketIO

/// Expected strings are what `JSON.stringify` prints in Node 20 for the same value.
@Suite("JSONWriter")
struct JSONWriterTests {
    private func string(_ text: String) -> String { JSONWriter.string(.string(text)) }

    @Test func literalsWriteAsInJavaScript() {
        #expect(JSONWriter.string(.null) == "null")
        #expect(JSONWriter.string(.bool(true)) == "true")
        #expect(JSONWriter.string(.bool(false)) == "false")
    }

    @Test(arguments: [
        ("\"", #""\"""#),
        ("\\", #""\\""#),
        ("\n", #""\n""#),
        ("\r", #""\r""#),
        ("\t", #""\t""#),
        ("\u{08}", #""\b""#),
        ("\u{0C}", #""\f""#),
        ("\u{0}", #""\u0000""#),
        ("\u{1}", #""\u0001""#),
        ("\u{1B}", #""\u001b""#),
        ("\u{1E}", #""\u001e""#),
        ("\u{1F}", #""\u001f""#),
    ])
    func quoteBackslashAndControlCharactersAreEscaped(raw: String, written: String) {
        #expect(string(raw) == written)
    }

    @Test func everythingElseIsWrittenRaw() {
        #expect(string("/") == #""/""#)
        #expect(string("'<>&") == #""'<>&""#)
        #expect(string("\u{7F}") == "\"\u{7F}\"")
        #expect(string("\u{2028}\u{2029}") == "\"\u{2028}\u{2029}\"")
    }

    @Test func nonASCIIAndEmojiAreWrittenAsRawUTF8() {
        let written = string("héllo 日本 👋🏽 👨‍👩‍👧")
        #expect(written == "\"héllo 日本 👋🏽 👨‍👩‍👧\"")
        #expect(Array(string("é").utf8) == [0x22, 0xC3, 0xA9, 0x22])
        #expect(Array(string("👋").utf8) == [0x22, 0xF0, 0x9F, 0x91, 0x8B, 0x22])
    }

    /// The writer copies the runs between escapes by UTF-8 position; a combining mark right
    /// after an escaped character shares a Character with it, and must still come out once.
    @Test func combiningMarksAfterAnEscapeAreCopiedExactlyOnce() {
        #expect(Array(string("a\"\u{301}b").utf8) == Array(#""a\"\#u{301}b""#.utf8))
        #expect(Array(string("\\\u{301}").utf8) == Array(#""\\\#u{301}""#.utf8))
        #expect(Array(string("\n\u{301}\u{1}\u{302}").utf8) == Array(#""\n\#u{301}\u0001\#u{302}""#.utf8))
    }

    @Test func escapesInsideLongerTextKeepTheRestIntact() {
        #expect(string("say \"hi\"\nto\\all\u{1}!") == #""say \"hi\"\nto\\all\u0001!""#)
        #expect(string("") == #""""#)
    }

    @Test(arguments: [
        (0.0, "0"), (-0.0, "0"), (1.0, "1"), (-1.0, "-1"), (42.0, "42"), (25000.0, "25000"),
        (1_000_000.0, "1000000"), (9_007_199_254_740_991.0, "9007199254740991"),
        (-9_007_199_254_740_991.0, "-9007199254740991"), (1e15, "1000000000000000"),
    ])
    func integersWriteWithoutAFraction(number: Double, written: String) {
        #expect(JSONWriter.formatNumber(number) == written)
        #expect(JSONWriter.string(.number(number)) == written)
    }

    @Test(arguments: [
        (1.5, "1.5"), (-2.5, "-2.5"), (0.1, "0.1"), (0.30000000000000004, "0.30000000000000004"),
        (123.456, "123.456"), (1234567.125, "1234567.125"), (0.000123, "0.000123"),
        (0.00001, "0.00001"), (0.000001, "0.000001"), (-0.000001, "-0.000001"),
        (1e-7, "1e-7"), (1.5e-7, "1.5e-7"), (-1.5e-7, "-1.5e-7"), (Double.leastNonzeroMagnitude, "5e-324"),
    ])
    func fractionsWriteAsJavaScriptDoes(number: Double, written: String) {
        #expect(JSONWriter.formatNumber(number) == written)
    }

    @Test(arguments: [
        (9_007_199_254_740_992.0, "9007199254740992"),
        (1e16, "10000000000000000"),
        (1e20, "100000000000000000000"),
        (-1e20, "-100000000000000000000"),
        (18_446_744_073_709_551_616.0, "18446744073709552000"),
        (123_456_789_012_345_680_000.0, "123456789012345680000"),
        (1e21, "1e+21"),
        (1.5e21, "1.5e+21"),
        (-1e21, "-1e+21"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
    ])
    func largeNumbersWriteAsJavaScriptDoesWithoutTrapping(number: Double, written: String) {
        // Integral values past Int64's range (but below 1e21) once trapped in an Int64 conversion.
        #expect(JSONWriter.formatNumber(number) == written)
    }

    @Test func nonFiniteNumbersWriteAsNull() {
        #expect(JSONWriter.formatNumber(.infinity) == "null")
        #expect(JSONWriter.formatNumber(-.infinity) == "null")
        #expect(JSONWriter.formatNumber(.nan) == "null")
        #expect(JSONWriter.string(.array([.number(.infinity)])) == "[null]")
    }

    @Test func arraysAndObjectsWriteWithoutSpacesInKeyOrder() {
        #expect(JSONWriter.string(.array([])) == "[]")
        #expect(JSONWriter.string(.object([])) == "{}")
        let value = JSONValue.object([
            ("z", .number(1)), ("a", .array([.null, .bool(false), .string("x"), .object([])])), ("m", .object([("k", .number(0.5))])),
        ])
        #expect(JSONWriter.string(value) == #"{"z":1,"a":[null,false,"x",{}],"m":{"k":0.5}}"#)
    }

    @Test func objectKeysAreEscapedLikeStrings() {
        #expect(JSONWriter.string(.object([("a\"b\n", .number(1))])) == #"{"a\"b\n":1}"#)
    }

    @Test func binaryWithoutPlaceholderWritesAsNull() {
        #expect(JSONWriter.string(.array([.binary([1, 2])])) == "[null]")
    }

    @Test func writeAppendsToExistingText() {
        var out = "42"
        JSONWriter.write(.array([.string("a")]), into: &out)
        #expect(out == #"42["a"]"#)
    }

    @Test func chatPayloadsMatchTheOriginalRedisBytes() {
        let join = JSONValue.object([("event", .string("join")), ("data", .object([("username", .string("carol"))]))])
        #expect(JSONWriter.string(join) == #"{"event":"join","data":{"username":"carol"}}"#)
        let say = JSONValue.object([
            ("event", .string("broadcast_say")),
            ("data", .object([("username", .string("dave")), ("text", .string("hi"))])),
        ])
        #expect(JSONWriter.string(say) == #"{"event":"broadcast_say","data":{"username":"dave","text":"hi"}}"#)
        let quit = JSONValue.object([("event", .string("broadcast_quit")), ("data", .object([("username", .string("dave"))]))])
        #expect(JSONWriter.string(quit) == #"{"event":"broadcast_quit","data":{"username":"dave"}}"#)
    }

    @Test(arguments: [
        #"{"event":"join","data":{"username":"carol"}}"#,
        #"["say",{"text":"héllo 👋","n":[1,-2.5,1e-7,1e+21,0.001],"ok":true,"none":null}]"#,
        #"{"esc":"\"\\\n\r\t\b\f\u0001\u001f","slash":"/","uni":"\u2028"}"#,
        #"[[[[]]],{},{"":""}]"#,
    ])
    func parseThenWriteReproducesCanonicalJSON(text: String) throws {
        let expected = text.replacing(#"\u2028"#, with: "\u{2028}")
        #expect(JSONWriter.string(try JSONParser.parse(Substring(text))) == expected)
    }

    @Test func parseThenWriteNormalisesLikeJavaScript() throws {
        // JSON.stringify(JSON.parse(text)) drops spaces, un-escapes what needs no escape and
        // rewrites numbers in their shortest form.
        let text = #"{ "a" : [ 1.0 , 1e2 , -0 , 0.5e-6 , 12.50 ] , "b" : "\u0041\/\u00e9" }"#
        #expect(JSONWriter.string(try JSONParser.parse(Substring(text))) == #"{"a":[1,100,0,5e-7,12.5],"b":"A/é"}"#)
    }
}
