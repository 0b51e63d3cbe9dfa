import NIOCore

/// The fanout of a node that has no peers: a published message goes straight to local members.
/// There is nothing to connect, wait for or close. `delivery` is written once, in
/// start(delivery:), before any client can publish; a lock would cost every message.
public final class LocalFanout: Fanout, @unchecked Sendable { // delivery, storeLoop: written once before any publish, read-only after
    private let eventLoop: any EventLoop
    private var delivery: (any FanoutDelivery)?
    /// With recovery on, every broadcast is stamped on the store's loop: publishes hop there.
    private var storeLoop: (any EventLoop)?

    /// `eventLoop` completes the lifecycle futures.
    public init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func start(delivery: any FanoutDelivery) {
        self.delivery = delivery
        self.storeLoop = delivery.recovery?.eventLoop
    }

    public func subscribe(room: String) {}
    public func unsubscribe(room: String) {}

    public func publish(_ message: ChatMessage) {
        guard let delivery else { return }
        guard let storeLoop else { return delivery.deliverLocally(ChatBroadcast(message)) }
        // Always queued, even from the store's loop: publishes from one loop then reach the
        // store in the order they were made (an inline one would overtake a queued one, such
        // as a session's record change that must precede its join).
        let broadcast = ChatBroadcast(message)
        storeLoop.execute { delivery.deliverLocally(broadcast) }
    }

    public func start(_ context: FanoutStartContext) throws {}

    public func drain(deadline: NIODeadline) -> EventLoopFuture<Void> {
        eventLoop.makeSucceededVoidFuture()
    }

    public func stop() -> EventLoopFuture<Void> {
        eventLoop.makeSucceededVoidFuture()
    }

    public var health: FanoutHealth { FanoutHealth(isReady: true) }

    /// One node owns every session: nothing to relay.
    public var relay: (any SessionRelay)? { nil }
}
