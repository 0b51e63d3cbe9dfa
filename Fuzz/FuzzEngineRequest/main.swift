import EngineIO
import FuzzSupport

// The Engine.IO request router's pure part: `EngineRequest.parse(uri:path:)` (is this URI the
// Engine.IO endpoint, and which transport / protocol version / sid does it ask for) and the
// query-string decoding under it. ChatServer's HTTPRouter and WebSocketUpgrade decide with
// exactly this call; the rest of their routing is a switch over fixed paths and needs a live
// ServerContext, so it is left to the integration tests.
//
// Input: the request URI (NIO hands it over as a String decoded from the request line);
// after a 0x00 byte, a configured path to use instead of the default "/socket.io/".

func percentEncoded(_ text: String) -> String {
    let hex = Array("0123456789ABCDEF".utf8)
    var out: [UInt8] = []
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            out.append(byte)
        default:
            out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
        }
    }
    return String(decoding: out, as: UTF8.self)
}

fuzz { input in
    let pieces = parts(input, separator: 0)
    let uri = String(decoding: pieces[0], as: UTF8.self)
    let path = pieces.count > 1 ? String(decoding: pieces[1], as: UTF8.self) : EngineRequest.defaultPath

    // Percent-encoding any name and value (every byte but the unreserved ones) and parsing
    // gives them back exactly, whatever the URI held.
    let name = String(decoding: pieces[0].prefix(pieces[0].count / 2), as: UTF8.self)
    let value = String(decoding: pieces[0].dropFirst(pieces[0].count / 2), as: UTF8.self)
    let pair = percentEncoded(name) + "=" + percentEncoded(value)
    expect(QueryString.parse(pair[...]) == [name: value], "percent-encoded pair did not round-trip")

    let requestPath = String(uri.prefix { $0 != "?" })
    let isEndpoint = requestPath == path || requestPath + "/" == path
    guard let result = EngineRequest.parse(uri: uri, path: path) else {
        expect(!isEndpoint, "\(uri.debugDescription) is the endpoint \(path.debugDescription) but was not parsed")
        return
    }
    expect(isEndpoint, "\(uri.debugDescription) is not under \(path.debugDescription) but was parsed")
    let queryText = uri.firstIndex(of: "?").map { uri[uri.index(after: $0)...] } ?? ""
    let query = QueryString.parse(queryText)
    switch result {
    case .success(let request):
        expect(request.query == query, "query differs from QueryString.parse")
        expect(query["transport"] == request.transport.rawValue, "transport \(request.transport) not from the query")
        expect(query["EIO"] == "4", "accepted EIO=\(query["EIO"] ?? "nil")")
        expect(request.sid == query["sid"], "sid not from the query")
        if let sid = request.sid { expect(!sid.isEmpty && sid.utf8.count <= 64, "accepted sid of \(sid.utf8.count) bytes") }
    case .failure(let code):
        switch code {
        case .unknownTransport:
            expect(query["transport"].flatMap(EngineRequest.Transport.init(rawValue:)) == nil, "valid transport refused")
        case .unsupportedProtocolVersion:
            expect(query["EIO"] != "4", "EIO=4 refused")
        case .unknownSid:
            expect(query["sid"].map { $0.isEmpty || $0.utf8.count > 64 } == true, "good sid refused")
        default:
            expect(false, "parse returned \(code), which is the server's to decide")
        }
    }

}
