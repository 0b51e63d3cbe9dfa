/// The open packet's payload, with the key order of the official server:
/// `{"sid":…,"upgrades":[…],"pingInterval":…,"pingTimeout":…,"maxPayload":…}`.
public struct EngineHandshake: Equatable, Sendable {
    public var sid: String
    public var upgrades: [String]
    public var pingIntervalMs: Int
    public var pingTimeoutMs: Int
    public var maxPayload: Int

    public init(sid: String, upgrades: [String], pingIntervalMs: Int, pingTimeoutMs: Int, maxPayload: Int) {
        self.sid = sid
        self.upgrades = upgrades
        self.pingIntervalMs = pingIntervalMs
        self.pingTimeoutMs = pingTimeoutMs
        self.maxPayload = maxPayload
    }

    /// sids are base64url of CSPRNG bytes, so quoting them needs no escaping.
    public var json: String {
        let upgradeList = upgrades.map { "\"\($0)\"" }.joined(separator: ",")
        return #"{"sid":"\#(sid)","upgrades":[\#(upgradeList)],"pingInterval":\#(pingIntervalMs),"pingTimeout":\#(pingTimeoutMs),"maxPayload":\#(maxPayload)}"#
    }

    public var openPacket: EnginePacket { EnginePacket(.open, .text(json)) }

    /// The open packet's text form: the handshake GET's body, a WebSocket's first frame.
    public var openText: String { EnginePacket.encodeText(.open, json) }
}

/// Unguessable session ids, base64url, 20 characters: the same length and alphabet as the Node
/// server's ids.
///
/// Engine.IO sids name the node that owns the session (docs/RELAY.md): `make(ownerTag:)` is the
/// node's 4-character tag (ClusterConfig's `NodeTag`) followed by 16 characters of 12 bytes
/// (96 bits) from the system CSPRNG (getrandom on Linux). The tag is public and only routes a
/// request to its owner; the 96 random bits are what make the sid unguessable. `make()` is all
/// random (15 bytes) and stays for ids that route nowhere: Socket.IO's sid and recovery's pid.
public enum SessionID {
    /// Characters in every id made here.
    public static let length = 20
    /// Characters of the owner tag at the start of an Engine.IO sid.
    public static let ownerTagLength = 4

    /// 20 random characters (15 CSPRNG bytes).
    public static func make() -> String {
        randomText(byteCount: 15)
    }

    /// An Engine.IO sid owned by the node whose tag is `ownerTag` (4 base64url characters):
    /// the tag, then 16 random characters (12 CSPRNG bytes).
    public static func make(ownerTag: String) -> String {
        precondition(ownerTag.utf8.count == ownerTagLength && ownerTag.utf8.allSatisfy(isBase64URL),
                     "an owner tag is \(ownerTagLength) base64url characters, not '\(ownerTag)'")
        return ownerTag + randomText(byteCount: 12)
    }

    /// The owner tag of an Engine.IO sid: its first 4 characters, when it has the shape
    /// `make(ownerTag:)` gives (20 base64url characters); nil for anything else a client sends.
    public static func ownerTag(of sid: String) -> Substring? {
        guard sid.utf8.count == length, sid.utf8.allSatisfy(isBase64URL) else { return nil }
        return sid.prefix(ownerTagLength)
    }

    private static func isBase64URL(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
            return true
        default:
            return false
        }
    }

    /// `byteCount` (a multiple of 3, so there is no padding) CSPRNG bytes as base64url.
    private static func randomText(byteCount: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<byteCount).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return String(Base64.encode(bytes).map { $0 == "+" ? "-" : ($0 == "/" ? "_" : $0) })
    }
}
