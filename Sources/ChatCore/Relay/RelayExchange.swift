import NIOConcurrencyHelpers

/// One relayed GET/POST on the owner: the handler replies once; it can learn whether the relay
/// cancelled the request or was lost before that. Made by the transport (the mesh), which
/// passes where a reply goes and calls `finish(_:)` when the relay's side ends it.
public final class RelayExchange: Sendable {
    private enum State {
        /// Waiting for the reply; the handler's end callback once it set one.
        case open(onEnd: (@Sendable (RelayEnd) -> Void)?)
        /// Ended by the relay before the handler set its callback: given to it when set.
        case endedEarly(RelayEnd)
        /// Replied or ended: nothing more happens.
        case done
    }

    private let state = NIOLockedValueBox<State>(.open(onEnd: nil))
    private let deliver: @Sendable (RelayReply) -> Void

    /// `deliver` carries the reply back to the relay (called at most once, on the replying thread).
    public init(deliver: @escaping @Sendable (RelayReply) -> Void) {
        self.deliver = deliver
    }

    /// Answers the relayed request. Only the first call of `reply` counts, and none after the
    /// exchange ended (the relay is gone then: the answer has nowhere to go).
    public func reply(_ reply: RelayReply) {
        let first = state.withLockedValue { state -> Bool in
            guard case .open = state else { return false }
            state = .done
            return true
        }
        if first { deliver(reply) }
    }

    /// Sets what to do if the relay ends the exchange before the reply (set once by the
    /// handler). It runs at most once, never after `reply`; at once if the end came first.
    public func onEnd(_ body: @escaping @Sendable (RelayEnd) -> Void) {
        let early = state.withLockedValue { state -> RelayEnd? in
            switch state {
            case .open:
                state = .open(onEnd: body)
                return nil
            case .endedEarly(let why):
                state = .done
                return why
            case .done:
                return nil
            }
        }
        if let early { body(early) }
    }

    /// For the transport: the relay's side ended the exchange (RELAY_CLOSE, or its link went
    /// down). Ignored once replied or already ended.
    public func finish(_ why: RelayEnd) {
        let callback = state.withLockedValue { state -> (@Sendable (RelayEnd) -> Void)? in
            guard case .open(let onEnd) = state else { return nil }
            if let onEnd {
                state = .done
                return onEnd
            }
            state = .endedEarly(why)
            return nil
        }
        callback?(why)
    }

    /// Whether the exchange was replied or ended.
    public var isFinished: Bool {
        state.withLockedValue { state in
            if case .open = state { return false }
            return true
        }
    }
}
