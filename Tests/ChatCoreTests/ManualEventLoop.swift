import Dispatch
import NIOCore
import NIOEmbedded

/// Tracks which `ManualEventLoop` of a test is "running", so `inEventLoop` is true for exactly
/// one loop at a time, as on real threads (an `EmbeddedEventLoop` always says true, which would
/// hide the cross-loop hop in `RoomHub.deliverLocally`).
final class LoopWorld {
    fileprivate weak var current: ManualEventLoop?
}

/// A single-threaded event loop whose tasks run only when the test calls `run()`, and which is
/// "current" only while its own tasks run (or inside `enter`).
final class ManualEventLoop: EventLoop, @unchecked Sendable { // one test thread runs every loop of a LoopWorld
    private let world: LoopWorld
    private var queue: [() -> Void] = []
    // Backs timers and promises, which these tests do not exercise.
    private let backing = EmbeddedEventLoop()
    let name: String

    init(_ name: String, world: LoopWorld) {
        self.name = name
        self.world = world
    }

    var pendingTasks: Int { queue.count }

    var inEventLoop: Bool { world.current === self }

    func execute(_ task: @escaping @Sendable () -> Void) {
        queue.append(task)
    }

    /// Runs `body` as if on this loop's thread.
    func enter<T>(_ body: () throws -> T) rethrows -> T {
        let previous = world.current
        world.current = self
        defer { world.current = previous }
        return try body()
    }

    /// Runs queued tasks, including tasks they queue, until none are left.
    func run() {
        enter {
            while !queue.isEmpty {
                let task = queue.removeFirst()
                task()
            }
        }
    }

    var now: NIODeadline { backing.now }

    func scheduleTask<T>(deadline: NIODeadline, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        backing.scheduleTask(deadline: deadline, task)
    }

    func scheduleTask<T>(in delay: TimeAmount, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        backing.scheduleTask(in: delay, task)
    }

    func preconditionInEventLoop(file: StaticString, line: UInt) {
        precondition(inEventLoop, "not on \(name)", file: file, line: line)
    }

    func preconditionNotInEventLoop(file: StaticString, line: UInt) {
        precondition(!inEventLoop, "on \(name)", file: file, line: line)
    }

    func shutdownGracefully(queue: DispatchQueue, _ callback: @escaping @Sendable (Error?) -> Void) {
        backing.shutdownGracefully(queue: queue, callback)
    }

    var description: String { name }
}
