/// Classifies one Engine.IO packet (the payload of one WebSocket text frame) by its first bytes,
/// the way the bench needs it: no JSON parsing. A broadcast say is recognised by its fixed
/// prefix and its stamp is read right after `"text":"`.
public enum ScannedPacket: Equatable, Sendable {
    case open                    // 0{…}
    case ping                    // 2
    case close                   // 1
    case connected               // 40{…}
    case connectError            // 44…
    case say(SayStamp?)          // 42["message",{"event":"broadcast_say",…}] (nil: not a bench text)
    case join(name: Range<Int>)   // 42["message",{"event":"join","data":{"username":"U"}}]: where U is
    case otherMessage            // broadcast_quit and anything else under "message"
    case error                   // 42["error",…]
    case other
}

public enum PacketScanner {
    static let messagePrefix = Array(#"42["message",{"event":""#.utf8)
    static let sayKind = Array(#"broadcast_say""#.utf8)
    static let joinKind = Array(#"join","data":{"username":""#.utf8)
    static let textKey = Array(#""text":""#.utf8)
    static let errorPrefix = Array(#"42["error""#.utf8)

    public static func scan(_ p: UnsafeRawBufferPointer) -> ScannedPacket {
        guard let first = p.first else { return .other }
        switch first {
        case UInt8(ascii: "2"): return p.count == 1 ? .ping : .other
        case UInt8(ascii: "0"): return .open
        case UInt8(ascii: "1"): return .close
        case UInt8(ascii: "4"): break
        default: return .other
        }
        guard p.count >= 2 else { return .other }
        switch p[1] {
        case UInt8(ascii: "0"): return .connected
        case UInt8(ascii: "4"): return .connectError
        case UInt8(ascii: "2"): break
        default: return .other
        }
        if hasPrefix(p, messagePrefix, at: 0) {
            let kindAt = messagePrefix.count
            if hasPrefix(p, sayKind, at: kindAt) {
                guard let at = find(textKey, in: p, from: kindAt + sayKind.count) else { return .say(nil) }
                return .say(SayText.parse(UnsafeRawBufferPointer(rebasing: p[at...])))
            }
            if hasPrefix(p, joinKind, at: kindAt) {
                let start = kindAt + joinKind.count
                var end = start
                while end < p.count && p[end] != UInt8(ascii: "\"") { end += 1 }
                return .join(name: start..<end)
            }
            return .otherMessage
        }
        if hasPrefix(p, errorPrefix, at: 0) { return .error }
        return .other
    }

    public static func scan(_ text: String) -> ScannedPacket {
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBytes { scan(UnsafeRawBufferPointer($0)) }
    }

    static func hasPrefix(_ p: UnsafeRawBufferPointer, _ prefix: [UInt8], at offset: Int) -> Bool {
        guard p.count - offset >= prefix.count else { return false }
        for i in 0..<prefix.count where p[offset + i] != prefix[i] { return false }
        return true
    }

    /// Index just past the first occurrence of `needle` at or after `from`.

    static func find(_ needle: [UInt8], in p: UnsafeRawBufferPointer, from: Int) -> Int? {
        let first = needle[0]
        var i = from
        let last = p.count - needle.count
        while i <= last {
            if p[i] == first && hasPrefix(p, needle, at: i) { return i + needle.count }
            i += 1
        }
        return nil
    }
}
