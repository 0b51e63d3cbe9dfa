/// The transport and heartbeat state of one Engine.IO session, without sockets or clocks.
///
/// The server feeds it every packet a client sends (saying on which transport it came, and
/// when) and the few events it owns (a heartbeat deadline may have passed, a probe WebSocket
/// arrived); it answers with what the server must do. Timers live in the server: this type
/// only says when the next heartbeat step is due (`EngineHeartbeat`).
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

        /// What a long-poll GET still pending when the session closes is answered with. The
        /// client's own close needs no echo, so (as the reference server does) the poll is just
        /// released with a noop; any other close tells the client with a close packet.
        public var pendingPollRelease: EnginePacket.PacketType {
            self == .clientClose ? .noop : .close
        }
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
        /// The owed pong arrived: the next ping is due at `nextPingAt`.
        case heartbeat(nextPingAt: UInt64)
        case close(CloseReason)
        case none
    }

    public enum HeartbeatAction: Equatable, Sendable {
        /// Nothing is due before `until`.
        case wait(until: UInt64)
        /// Send a ping now and look again at `pongDue`.
        case sendPing(pongDue: UInt64)
        /// The pong did not come: the session is now closed.
        case close(CloseReason)
        /// The session is closed; no heartbeat runs.
        case stopped
    }

    public private(set) var phase: Phase
    public private(set) var heartbeat: EngineHeartbeat
    public var awaitingPong: Bool { heartbeat.awaitingPong }

    public init(transport: EngineRequest.Transport, heartbeat: EngineHeartbeat) {
        phase = transport == .websocket ? .websocket : .polling
        self.heartbeat = heartbeat
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

    /// A heartbeat deadline may have passed: asked by the server's timer, and before anything
    /// the client sends is handled, so a client heard from after its pong deadline finds the
    /// session closed however late the timer is.
    public mutating func heartbeatDue(now: UInt64) -> HeartbeatAction {
        guard !isClosed else { return .stopped }
        switch heartbeat.step(now: now) {
        case .wait(let until):
            return .wait(until: until)
        case .sendPing(let pongDue):
            return .sendPing(pongDue: pongDue)
        case .timedOut:
            phase = .closed(.pingTimeout)
            return .close(.pingTimeout)
        }
    }

    /// Closes the session; returns false if it was already closed.
    @discardableResult
    public mutating func close(_ reason: CloseReason) -> Bool {
        guard !isClosed else { return false }
        phase = .closed(reason)
        return true
    }

    public mutating func receive(_ packet: EnginePacket, from source: Source, now: UInt64) -> Reaction {
        if isClosed { return .none }
        switch source {
        case .primary:
            return receiveOnPrimary(packet, now: now)
        case .probe:
            return receiveOnProbe(packet)
        }
    }

    private mutating func receiveOnPrimary(_ packet: EnginePacket, now: UInt64) -> Reaction {
        switch packet.type {
        case .message:
            return .deliver(packet.payload)
        case .pong:
            guard let nextPing = heartbeat.pongReceived(now: now) else { return .none }
            return .heartbeat(nextPingAt: nextPing)
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
