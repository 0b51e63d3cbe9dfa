/// The transport and heartbeat state of one Engine.IO session, without sockets or clocks.
///
/// The server feeds it every packet a client sends (saying on which transport it came) and the
/// few events it owns (a ping was sent, a probe WebSocket arrived); it answers with what the
/// server must do. Timers live in the server: this type only says when a pong is owed.
public struct EngineSessionState: Sendable {
    public enum Phase: Equatable, Sendable {
        /// Long-polling is the transport.
        case polling
        /// A WebSocket probe is open beside the polling transport, which still carries data.
        case upgrading(probeAnswered: Bool)
        /// WebSocket is the transport (upgraded, or WebSocket from the start).
        case websocket
        case closed(CloseReason)
    }

    public enum Source: Sendable {
        /// The transport that currently carries data.
        case primary
        /// A WebSocket opened to upgrade a polling session, before its `5`.
        case probe
    }

    public enum CloseReason: String, Equatable, Sendable {
        case clientClose = "client close"
        case pingTimeout = "ping timeout"
        case parseError = "parse error"
        case transportClose = "transport close"
        case transportError = "transport error"
        case outboundOverflow = "outbound buffer overflow"
        case serverClose = "server close"
    }

    public enum Reaction: Equatable, Sendable {
        /// A message for the layer above (Socket.IO).
        case deliver(EnginePacket.Payload)
        /// The probe's `2probe` was answered: send `3probe` on the probe and a `6` noop to the
        /// pending poll, so the client can stop polling.
        case answerProbe
        /// `5` arrived on the probe: it is now the primary transport; flush queued packets to it.
        case completeUpgrade
        /// The probe sent something out of order: close the probe, keep polling.
        case abortProbe
        /// The owed pong arrived: cancel the pong timer and schedule the next ping.
        case heartbeat
        case close(CloseReason)
        case none
    }

    public private(set) var phase: Phase
    public private(set) var awaitingPong = false

    public init(transport: EngineRequest.Transport) {
        phase = transport == .websocket ? .websocket : .polling
    }

    public var isClosed: Bool {
        if case .closed = phase { return true }
        return false
    }

    /// True while data must go through long-polling (including during an upgrade).
    public var sendsOverPolling: Bool {
        switch phase {
        case .polling, .upgrading: return true
        case .websocket, .closed: return false
        }
    }

    public var isUpgrading: Bool {
        if case .upgrading = phase { return true }
        return false
    }

    /// A WebSocket with this session's sid arrived. Only a polling session may upgrade, once.
    public mutating func beginUpgrade() -> Bool {
        guard case .polling = phase else { return false }
        phase = .upgrading(probeAnswered: false)
        return true
    }

    /// The probe WebSocket closed or timed out before `5`.
    public mutating func abortUpgrade() {
        if case .upgrading = phase { phase = .polling }
    }

    public mutating func pingSent() {
        awaitingPong = true
    }

    /// The pong timer fired. Returns the close reason if the pong is still owed.
    public mutating func pongDeadlinePassed() -> CloseReason? {
        guard awaitingPong, !isClosed else { return nil }
        phase = .closed(.pingTimeout)
        return .pingTimeout
    }

    /// Closes the session; returns false if it was already closed.
    @discardableResult
    public mutating func close(_ reason: CloseReason) -> Bool {
        guard !isClosed else { return false }
        phase = .closed(reason)
        return true
    }

    public mutating func receive(_ packet: EnginePacket, from source: Source) -> Reaction {
        if isClosed { return .none }
        switch source {
        case .primary:
            return receiveOnPrimary(packet)
        case .probe:
            return receiveOnProbe(packet)
        }
    }

    private mutating func receiveOnPrimary(_ packet: EnginePacket) -> Reaction {
        switch packet.type {
        case .message:
            return .deliver(packet.payload)
        case .pong:
            guard awaitingPong else { return .none }
            awaitingPong = false
            return .heartbeat
        case .close:
            phase = .closed(.clientClose)
            return .close(.clientClose)
        case .open, .ping, .upgrade, .noop:
            // The Node server ignores these from a v4 client; so do we.
            return .none
        }
    }

    private mutating func receiveOnProbe(_ packet: EnginePacket) -> Reaction {
        guard case .upgrading(let probeAnswered) = phase else { return .abortProbe }
        switch (packet.type, packet.payload) {
        case (.ping, .text("probe")) where !probeAnswered:
            phase = .upgrading(probeAnswered: true)
            return .answerProbe
        case (.upgrade, _) where probeAnswered:
            phase = .websocket
            return .completeUpgrade
        default:
            phase = .polling
            return .abortProbe
        }
    }
}
