import Testing
@testable import EngineIO

@Suite("EngineRequest")
struct EngineRequestTests {
    private func request(_ uri: String, path: String = EngineRequest.defaultPath) throws -> EngineRequest {
        let result = try #require(EngineRequest.parse(uri: uri, path: path))
        return try result.get()
    }

    private func failure(_ uri: String) -> EngineErrorCode? {
        guard case .failure(let code)? = EngineRequest.parse(uri: uri) else { return nil }
        return code
    }

    @Test func pollingHandshakeRequestParses() throws {
        let parsed = try request("/socket.io/?EIO=4&transport=polling&roomid=r1")
        #expect(parsed.transport == .polling)
        #expect(parsed.sid == nil)
        #expect(parsed.query == ["EIO": "4", "transport": "polling", "roomid": "r1"])
    }

    @Test func websocketRequestWithSidParses() throws {
        let parsed = try request("/socket.io/?EIO=4&transport=websocket&sid=rICOyfMeeIzVQmwUAAAC")
        #expect(parsed.transport == .websocket)
        #expect(parsed.sid == "rICOyfMeeIzVQmwUAAAC")
    }

    @Test func pathWithoutTrailingSlashIsTheSameEndpoint() throws {
        #expect(try request("/socket.io?EIO=4&transport=polling").transport == .polling)
    }

    @Test(arguments: ["/", "/other/?EIO=4&transport=polling", "/socket.io/x?EIO=4&transport=polling",
                      "/socket.io.js", "/SOCKET.IO/?EIO=4&transport=polling", "/metrics", ""])
    func pathMismatchIsNotAnEngineRequest(uri: String) {
        #expect(EngineRequest.parse(uri: uri) == nil)
        #expect(!EngineRequest.isEngineURI(uri))
    }

    /// The router's body limit asks the same question as the router: `/socket.io?…` without
    /// the slash gets max_payload too, not the small limit of other paths.
    @Test(arguments: ["/socket.io/?EIO=4&transport=polling", "/socket.io?EIO=4&transport=polling&sid=x",
                      "/socket.io", "/socket.io/"])
    func bothSpellingsOfThePathAreEngineURIs(uri: String) {
        #expect(EngineRequest.isEngineURI(uri))
    }

    @Test func customPathIsHonoured() throws {
        #expect(try request("/chat/?EIO=4&transport=polling", path: "/chat/").transport == .polling)
        #expect(EngineRequest.parse(uri: "/socket.io/?EIO=4&transport=polling", path: "/chat/") == nil)
    }

    @Test(arguments: [
        "/socket.io/",
        "/socket.io/?EIO=4",
        "/socket.io/?EIO=4&transport=flashsocket",
        "/socket.io/?EIO=4&transport=Polling",
        "/socket.io/?EIO=4&transport=",
        "/socket.io/?EIO=4&transport",
        "/socket.io/?EIO=3&transport=xhr-polling", // transport is checked before the version
    ])
    func unknownOrMissingTransportIsRejected(uri: String) {
        #expect(failure(uri) == .unknownTransport)
    }

    @Test(arguments: [
        "/socket.io/?EIO=3&transport=polling",
        "/socket.io/?transport=polling",
        "/socket.io/?EIO=5&transport=websocket",
        "/socket.io/?EIO=&transport=polling",
        "/socket.io/?EIO=04&transport=polling",
        "/socket.io/?eio=4&transport=polling",
    ])
    func otherOrMissingProtocolVersionIsRejected(uri: String) {
        #expect(failure(uri) == .unsupportedProtocolVersion)
    }

    @Test func emptyOrOversizedSidIsUnknown() throws {
        #expect(failure("/socket.io/?EIO=4&transport=polling&sid=") == .unknownSid)
        let long = String(repeating: "a", count: 65)
        #expect(failure("/socket.io/?EIO=4&transport=polling&sid=\(long)") == .unknownSid)
        let longest = String(repeating: "a", count: 64)
        #expect(try request("/socket.io/?EIO=4&transport=polling&sid=\(longest)").sid == longest)
    }

    @Test func queryValuesArePercentDecodedAndPlusIsSpace() throws {
        let parsed = try request("/socket.io/?EIO=4&transport=polling&roomid=room%201&name=a+b&plus=%2B&e=%C3%a9&t=%E6%97%A5")
        #expect(parsed.query["roomid"] == "room 1")
        #expect(parsed.query["name"] == "a b")
        #expect(parsed.query["plus"] == "+")
        #expect(parsed.query["e"] == "é")
        #expect(parsed.query["t"] == "日")
    }

    @Test func queryNamesArePercentDecodedToo() throws {
        let parsed = try request("/socket.io/?%45IO=4&trans%70ort=polling&room%69d=r")
        #expect(parsed.transport == .polling)
        #expect(parsed.query["roomid"] == "r")
    }

    @Test func firstOccurrenceOfANameWins() throws {
        let parsed = try request("/socket.io/?EIO=4&transport=polling&transport=websocket&EIO=3&roomid=a&roomid=b")
        #expect(parsed.transport == .polling)
        #expect(parsed.query["roomid"] == "a")
        #expect(failure("/socket.io/?EIO=3&EIO=4&transport=polling") == .unsupportedProtocolVersion)
    }

    @Test func nameWithoutValueAndEmptyPairsAreTolerated() throws {
        let parsed = try request("/socket.io/?&&EIO=4&&transport=polling&flag&x==y&")
        #expect(parsed.query["flag"] == "")
        #expect(parsed.query["x"] == "=y")
        #expect(parsed.query.count == 4)
    }

    @Test(arguments: [
        ("%", "%"),
        ("%4", "%4"),
        ("%zz", "%zz"),
        ("%G0", "%G0"),
        ("100%", "100%"),
        ("%%41", "%A"),
        ("a%2", "a%2"),
    ])
    func malformedPercentEscapeIsKeptLiterally(raw: String, decoded: String) {
        #expect(QueryString.decode(Substring(raw)) == decoded)
    }

    @Test func percentEscapeOfInvalidUTF8BecomesReplacementCharacter() {
        #expect(QueryString.decode("%FF") == "\u{FFFD}")
        #expect(QueryString.decode("a%C3") == "a\u{FFFD}")
    }

    @Test func queryStringParseIsIndependentOfTheRequest() {
        #expect(QueryString.parse("") == [:])
        #expect(QueryString.parse("a=1&b=2&a=3") == ["a": "1", "b": "2"])
    }

    @Test(arguments: [
        (EngineErrorCode.unknownTransport, #"{"code":0,"message":"Transport unknown"}"#, 400),
        (.unknownSid, #"{"code":1,"message":"Session ID unknown"}"#, 400),
        (.badHandshakeMethod, #"{"code":2,"message":"Bad handshake method"}"#, 400),
        (.badRequest, #"{"code":3,"message":"Bad request"}"#, 400),
        (.forbidden, #"{"code":4,"message":"Forbidden"}"#, 403),
        (.unsupportedProtocolVersion, #"{"code":5,"message":"Unsupported protocol version"}"#, 400),
    ])
    func errorCodeBodyMatchesTheNodeServer(code: EngineErrorCode, body: String, status: Int) {
        #expect(code.jsonBody == body)
        #expect(code.httpStatus == status)
    }

    @Test func everyErrorCodeIsCovered() {
        #expect(EngineErrorCode.allCases.map(\.rawValue) == [0, 1, 2, 3, 4, 5])
    }

    @Test func eio3RequestGetsTheRecordedErrorBody() throws {
        let code = try #require(failure("/socket.io/?EIO=3&transport=polling&roomid=r1"))
        #expect(code.jsonBody == #"{"code":5,"message":"Unsupported protocol version"}"#)
        #expect(code.httpStatus == 400)
    }
}
