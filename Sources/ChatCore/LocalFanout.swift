import NIOCore

/// The fanout of a node that has no peers: a published message goes straight to local members.
/// There is nothing to connect, wait for or close. `delivery` is written once, in
/// start(delivery:), before any client can publish; a lock would cost every message.
public final class LocalFanout: Fanout, @unchecked Sendable { // delivery: written once before any publish, read-only after
    private let eventLoop: any EventLoop
    private var delivery: (any FanoutDelivery)?

    /// `eventLoop` completes the lifecycle futures.
    public init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func start(delivery: any FanoutDelivery) {
        self.delivery = delivery
    }

    public func subscribe(room: String) {}
    public func unsubscribe(room: String) {}

    public func publish(_ message: ChatMessage) {
        delivery?.deliverLocally(ChatBroadcast(message))
    }

    public func start(_ context: FanoutStartContext) throws {}

    public func drain(deadline: NIODeadline) -> EventLoopFuture<Void> {
        eventLoop.makeSucceededVoidFuture()
    }

    public func stop() -> EventLoopFuture<Void> {
        eventLoop.makeSucceededVoidFuture()
    }

    public var health: FanoutHealth { FanoutHealth(isReady: true) }
}
