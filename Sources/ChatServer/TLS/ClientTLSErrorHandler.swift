import Logging
import NIOCore
import NIOSSL
import NIOTLS

/// Right above the TLS handler of a client connection: the TLS layer's errors end here. A
/// failed handshake (plain HTTP on the HTTPS port, garbage, a client that gave up, a scanner)
/// is one peer's problem: logged at debug and counted once as
/// `chatmesh_errors_total{reason="tls_handshake_failed"}`; the TLS handler has closed the
/// connection already. Errors after the handshake (a client that closes without close_notify,
/// as browsers do) close the connection quietly. Either way the HTTP and WebSocket handlers
/// above never see them, so they are not taken for protocol errors of their own.
final class ClientTLSErrorHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let metrics: ServerMetrics
    private let logger: Logger
    private var handshakeCompleted = false
    /// NIOSSL may report one failed handshake with several errors; it is counted once.
    private var handshakeFailureCounted = false

    init(metrics: ServerMetrics, logger: Logger) {
        self.metrics = metrics
        self.logger = logger
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted? = event as? TLSUserEvent {
            handshakeCompleted = true
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is NIOSSLError || error is BoringSSLError else {
            context.fireErrorCaught(error)
            return
        }
        let peer = context.channel.remoteAddress.map { "\($0)" } ?? "?"
        if handshakeCompleted {
            logger.debug("client TLS connection ended", metadata: ["peer": "\(peer)", "error": "\(error)"])
        } else {
            if !handshakeFailureCounted {
                handshakeFailureCounted = true
                metrics.countError("tls_handshake_failed")
            }
            logger.debug("client TLS handshake failed", metadata: ["peer": "\(peer)", "error": "\(error)"])
        }
        context.close(promise: nil)
    }
}
