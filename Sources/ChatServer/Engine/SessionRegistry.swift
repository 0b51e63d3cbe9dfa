import NIOConcurrencyHelpers

/// sid -> session, for every Engine.IO session of the node. Polling requests of one session may
/// arrive on any connection and event loop, so lookups take a lock; they happen once per HTTP
/// request or WebSocket open, never per broadcast.
final class SessionRegistry: Sendable {
    private let sessions = NIOLockedValueBox<[String: EngineSession]>([:])

    init() {}

    var count: Int { sessions.withLockedValue { $0.count } }

    /// Registers a new session unless the node is at `limit` connections.
    func insert(_ session: EngineSession, limit: Int) -> Bool {
        sessions.withLockedValue { table -> Bool in
            guard table.count < limit else { return false }
            table[session.sid] = session
            return true
        }
    }

    func remove(_ sid: String) {
        _ = sessions.withLockedValue { $0.removeValue(forKey: sid) }
    }

    func session(_ sid: String) -> EngineSession? {
        sessions.withLockedValue { $0[sid] }
    }

    func all() -> [EngineSession] {
        sessions.withLockedValue { Array($0.values) }
    }
}
