import NIOCore

/// On the client listener's server channel, before NIO's accept handler: tells the gate of
/// every socket as `accept` returns it, so the socket cap counts it from then. NIO hands the
/// socket to its own loop to be set up, and on a busy node that loop may get to it turns
/// later; the descriptor is held all that time.
final class AcceptedSocketCounter: ChannelInboundHandler {
    typealias InboundIn = any Channel

    private let gate: ConnectionGate

    init(gate: ConnectionGate) {
        self.gate = gate
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        gate.accepted(unwrapInboundIn(data))
        context.fireChannelRead(data)
    }
}
