import FuzzSupport
import SocketIO

// The strict JSON parser every Socket.IO payload goes through, and the writer that must
// match JavaScript's JSON.stringify. Promises: any bytes give a value or a `JSONParseError`
// at an offset inside the input, never a trap or deep recursion (nesting is bounded); a
// parsed value written and parsed again is the same value, and writing is stable from there;
// any string and any finite number survive a trip through the writer and the parser.

func depth(_ value: JSONValue) -> Int {
    switch value {
    case .array(let elements): return 1 + (elements.map(depth).max() ?? 0)
    case .object(let members): return 1 + (members.map { depth($0.1) }.max() ?? 0)
    default: return 0
    }
}

/// JSON.stringify writes non-finite numbers (from literals such as 1e400) as null.
func normalized(_ value: JSONValue) -> JSONValue {
    switch value {
    case .number(let number) where !number.isFinite: return .null
    case .array(let elements): return .array(elements.map(normalized))
    case .object(let members): return .object(members.map { ($0.0, normalized($0.1)) })
    default: return value
    }
}

fuzz { input in
    var reader = FuzzReader(input)
    let maxDepth = Int(reader.byte() % 40)

    // Any double (the next 8 bytes as its bit pattern): JSON.stringify's layout, then back.
    let number = Double(bitPattern: reader.uint64())
    let written = JSONWriter.formatNumber(number)
    if number.isFinite {
        expect(Double(written) == number, "formatNumber(\(number)) = \(written) does not read back")
        expect((try? JSONParser.parse(written[...])) == .number(number), "formatNumber(\(number)) = \(written) is not JSON")
    } else {
        expect(written == "null", "non-finite \(number) written as \(written)")
    }

    let bytes = reader.rest()
    // Any string (the bytes as lossy UTF-8) survives writeString and parse.
    let string = String(decoding: bytes, as: UTF8.self)
    let quoted = JSONWriter.string(.string(string))
    expect((try? JSONParser.parse(quoted[...])) == .string(string), "string did not round-trip: \(quoted.debugDescription)")

    // The bytes as JSON text; the parser works on UTF-8 bytes and rejects malformed sequences
    // itself, so feed them unvalidated when they are UTF-8, else their lossy decoding.
    let text = String(validating: bytes, as: UTF8.self) ?? string
    let value: JSONValue
    do throws(JSONParseError) {
        value = try JSONParser.parse(text[...], maxDepth: maxDepth)
    } catch {
        expect(error.offset >= 0 && error.offset <= text.utf8.count, "error offset \(error.offset) outside \(text.utf8.count) bytes")
        return
    }
    expect(depth(value) <= maxDepth, "value nested \(depth(value)) deep, limit \(maxDepth)")
    let json = JSONWriter.string(value)
    let again: JSONValue
    do {
        again = try JSONParser.parse(json[...], maxDepth: maxDepth)
    } catch {
        expect(false, "written JSON \(json.debugDescription) does not parse: \(error)")
        return
    }
    expect(again == normalized(value), "\(text.debugDescription) -> \(json.debugDescription) parses to another value")
    expect(JSONWriter.string(again) == json, "writing is not stable for \(text.debugDescription)")
}
