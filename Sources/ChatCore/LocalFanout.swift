/// The fanout of a node that has no peers: a published message goes straight to local members.
public final class LocalFanout: Fanout, @unchecked Sendable {
    // Set once in start(), before any client can publish.
    private var delivery: (any FanoutDelivery)?

    public init() {}

    public func start(delivery: any FanoutDelivery) {
        self.delivery = delivery
    }

    public func subscribe(room: String) {}
    public func unsubscribe(room: String) {}

    public func publish(_ message: ChatMessage) {
        delivery?.deliverLocally(ChatBroadcast(message))
    }
}
