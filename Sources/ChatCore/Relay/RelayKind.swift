/// What a relayed request is (docs/RELAY.md): the wire value of RELAY_REQUEST's kind byte.
public enum RelayKind: UInt8, Sendable, CaseIterable {
    case get = 1, post = 2, webSocket = 3

    /// The `kind` label of `chatmesh_relay_requests_total`.
    public var metricLabel: String {
        switch self {
        case .get: return "get"
        case .post: return "post"
        case .webSocket: return "websocket"
        }
    }
}
