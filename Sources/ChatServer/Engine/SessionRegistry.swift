import NIOConcurrencyHelpers
import NIOCore

/// sid -> session, for every Engine.IO session of the node. Polling requests of one session may
/// arrive on any connection and event loop, so lookups take a lock; they happen once per HTTP
/// request or WebSocket open, never per broadcast. Draining waits on it for the last session
/// to leave (`whenEmpty`): the removal that empties the table completes that wait.
final class SessionRegistry: Sendable {
    /// A drain waiting for the table to empty; whoever takes it out of `waiters` completes it.
    private struct Waiter {
        let id: Int
        let promise: EventLoopPromise<Bool>
        var timeout: Scheduled<Void>?
    }

    private struct Table {
        var sessions: [String: EngineSession] = [:]
        var waiters: [Waiter] = []
        var nextWaiterID = 0
    }

    private let table = NIOLockedValueBox(Table())

    init() {}

    var count: Int { table.withLockedValue { $0.sessions.count } }

    /// Registers a new session unless the node is at `limit` connections.
    func insert(_ session: EngineSession, limit: Int) -> Bool {
        table.withLockedValue { table -> Bool in
            guard table.sessions.count < limit else { return false }
            table.sessions[session.sid] = session
            return true
        }
    }

    func remove(_ sid: String) {
        let emptied = table.withLockedValue { table -> [Waiter] in
            guard table.sessions.removeValue(forKey: sid) != nil, table.sessions.isEmpty else { return [] }
            defer { table.waiters.removeAll() }
            return table.waiters
        }
        for waiter in emptied {
            waiter.timeout?.cancel()
            waiter.promise.succeed(true)
        }
    }

    func session(_ sid: String) -> EngineSession? {
        table.withLockedValue { $0.sessions[sid] }
    }

    func all() -> [EngineSession] {
        table.withLockedValue { Array($0.sessions.values) }
    }

    /// True as soon as no session is left (at once, if none is), false at `deadline` if some
    /// still are; completed on `eventLoop`.
    func whenEmpty(on eventLoop: any EventLoop, deadline: NIODeadline) -> EventLoopFuture<Bool> {
        let promise = eventLoop.makePromise(of: Bool.self)
        let id = table.withLockedValue { table -> Int? in
            guard !table.sessions.isEmpty else { return nil }
            table.nextWaiterID += 1
            table.waiters.append(Waiter(id: table.nextWaiterID, promise: promise))
            return table.nextWaiterID
        }
        guard let id else {
            promise.succeed(true)
            return promise.futureResult
        }
        let timeout = eventLoop.scheduleTask(deadline: deadline) { [table] in
            let expired = table.withLockedValue { table -> Bool in
                guard let index = table.waiters.firstIndex(where: { $0.id == id }) else { return false }
                table.waiters.remove(at: index)
                return true
            }
            if expired { promise.succeed(false) }
        }
        // Kept so that emptying cancels it; if the table emptied in between, it fires and finds nothing.
        table.withLockedValue { table in
            if let index = table.waiters.firstIndex(where: { $0.id == id }) { table.waiters[index].timeout = timeout }
        }
        return promise.futureResult
    }
}
