import ChatCore
import EngineIO
import NIOCore

/// Where requests other nodes relay to this one go (docs/RELAY.md): each is run exactly as if
/// its client had come here, through the same session lookup, Origin check, `max_payload` and
/// session state machine, with a responder that answers over the mesh. Registered on the
/// fanout's relay before the node starts.
final class RelayOwner: RelayOwnerHandler {
    private let server: ServerContext

    init(server: ServerContext) {
        self.server = server
    }

    func handleRelayed(_ request: RelayedRequest, from peer: String, exchange: RelayExchange) {
        let responder = HTTPResponder(exchange: exchange)
        guard let session = server.sessions.session(request.sid) else {
            return responder.send(.engineError(.unknownSid))
        }
        guard server.isOriginAllowed(request.origin) else {
            server.metrics.countError("forbidden_origin")
            return responder.send(.engineError(.forbidden))
        }
        switch request.kind {
        case .get:
            session.eventLoop.execute {
                // Ended on the way here (its client or its relay gone): nobody waits for it, and
                // whatever it took from the queue would be lost.
                guard !exchange.isFinished else { return }
                session.handlePollGET(responder)
                exchange.onEnd { why in
                    if session.eventLoop.inEventLoop {
                        session.relayedPollEnded(exchange, why: why)
                    } else {
                        session.eventLoop.execute { session.relayedPollEnded(exchange, why: why) }
                    }
                }
            }
        case .post:
            // The relay held the body to its own bound; this node's is the one that counts.
            guard request.body.readableBytes <= server.engine.maxPayload else {
                server.metrics.countError("payload_too_large")
                return responder.send(HTTPReply(
                    status: .payloadTooLarge, contentType: "text/plain; charset=UTF-8",
                    text: "payload too large: the limit is \(server.engine.maxPayload) bytes"
                ))
            }
            guard let text = String(validating: request.body.readableBytesView, as: UTF8.self) else {
                server.metrics.countError("parse_error")
                return responder.send(.engineError(.badRequest))
            }
            session.eventLoop.execute { session.handlePollPOST(text, responder: responder) }
        case .webSocket:
            // Streams come through `openRelayedStream`.
            responder.send(.engineError(.badRequest))
        }
    }

    func openRelayedStream(sid: String, origin: String?, from peer: String, stream: any RelayStream) -> (any RelayStreamSink)? {
        guard let session = server.sessions.session(sid) else { return nil }
        guard server.isOriginAllowed(origin) else {
            server.metrics.countError("forbidden_origin")
            return nil
        }
        let socket = RelayedEngineSocket(session: session, stream: stream, metrics: server.metrics, maxMessageSize: server.engine.maxPayload)
        // Queued before any of the client's packets (the sink's, from this same thread).
        session.eventLoop.execute { session.beginRelayedUpgrade(socket) }
        return socket
    }
}
