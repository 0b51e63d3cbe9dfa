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

/// Unguessable session ids: 15 bytes from the system CSPRNG (getrandom on Linux), base64url,
/// 20 characters, the same length and alphabet as the Node server's ids.
public enum SessionID {
    public static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<15).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var text = Base64.encode(bytes)
        text = String(text.map { $0 == "+" ? "-" : ($0 == "/" ? "_" : $0) })
        return text
    }
}
