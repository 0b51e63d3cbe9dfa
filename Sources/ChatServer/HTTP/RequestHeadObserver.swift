import NIOCore
import NIOHTTP1

/// Sits after the HTTP decoder and upgrade handler of a client connection and tells the
/// connection's `ClientConnectionTracker` when a request head arrives (the header timer stops)
/// and when a response ends (on a keep-alive connection it starts again). Passes everything
/// through.
///
/// It reads HTTP parts, so it must leave the pipeline before a WebSocket upgrade puts bytes
/// through it: the upgrade's completion handler calls `connectionUpgraded(_:)`, which NIO
/// runs after the HTTP codec is gone and before the upgraded handlers write anything.
final class RequestHeadObserver: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    static let name = "chatmesh-request-head-observer"

    private let tracker: ClientConnectionTracker

    init(tracker: ClientConnectionTracker) {
        self.tracker = tracker
    }

    /// Adds an observer for the connection's tracker, if it has one (a pipeline built without
    /// a `ConnectionGate`, as in some tests, has none).
    static func addIfTracked(to pipeline: ChannelPipeline.SynchronousOperations) throws {
        guard let tracker = try? pipeline.handler(type: ClientConnectionTracker.self) else { return }
        try pipeline.addHandler(RequestHeadObserver(tracker: tracker), name: name)
    }

    /// For `configureHTTPServerPipeline`'s upgrade completion handler: the connection is a
    /// WebSocket now; the tracker stops timing it and this observer leaves.
    static func connectionUpgraded(_ context: ChannelHandlerContext) {
        let pipeline = context.pipeline.syncOperations
        guard let observer = try? pipeline.handler(type: RequestHeadObserver.self) else { return }
        observer.tracker.connectionUpgraded()
        pipeline.removeHandler(observer, promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) {
            tracker.requestHeadReceived()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // Before passing the end on: NIO's pipelining handler, below, delivers a request that
        // was queued behind this response from within that write, and its head must find the
        // connection waiting (and stop the timer), not be followed by a stale "waiting".
        if case .end = unwrapOutboundIn(data) { tracker.responseEnded() }
        context.write(data, promise: promise)
    }
}
