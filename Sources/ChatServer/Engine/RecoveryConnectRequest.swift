import SocketIO

/// What a Socket.IO CONNECT asks of connection-state recovery, read from its auth payload.
/// socket.io-client 4.6+ merges `{"pid":…,"offset":…}` into whatever auth the application
/// gives, so other keys are ignored. Only a string pid asks for recovery; anything else is
/// classified here, so the session can answer each case without touching the store.
enum RecoveryConnectRequest: Equatable {
    /// No pid (no auth, auth not an object, or no `pid` key): a new session.
    case fresh
    /// A `pid` key whose value is not a string: a new session, counted as `bad_auth`.
    case badAuth
    /// A string pid with an `offset` that is present but not a string: a new session,
    /// counted as `bad_offset` (a string offset is judged by the store, which parses it).
    case badOffset
    /// Recover the session `pid`; `offset` is absent when the client never got a broadcast.
    case recover(pid: String, offset: String?)

    init(auth: JSONValue?) {
        guard let auth, auth.isObject, let pidValue = auth["pid"] else {
            self = .fresh
            return
        }
        guard let pid = pidValue.stringValue else {
            self = .badAuth
            return
        }
        switch auth["offset"] {
        case nil:
            self = .recover(pid: pid, offset: nil)
        case .string(let offset)?:
            self = .recover(pid: pid, offset: offset)
        case _?:
            self = .badOffset
        }
    }
}
