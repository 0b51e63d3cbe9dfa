import NIOCore

/// The first handler of every accepted client connection (below TLS, when the node serves
/// HTTPS): enrols the connection in its loop's `ClientSocketRegistry` from the moment it is
/// set up until it is gone, so the header timer runs from the accept, through a TLS
/// handshake, until the first request head is decoded. It passes every byte through untouched;
/// `RequestHeadObserver`, after the HTTP decoder, tells it when request heads arrive and
/// responses end.
final class ClientConnectionTracker: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    static let name = "chatmesh-client-socket"

    private let registry: ClientSocketRegistry
    private var context: ChannelHandlerContext?
    private var upgraded = false
    /// Set by the registry: this connection's place in its queues, nil when not in them.
    var awaitingEntry: ArrivalQueue<ClientConnectionTracker>.Entry?
    var unfinishedEntry: ArrivalQueue<ClientConnectionTracker>.Entry?
    /// Bytes arrived since the connection started waiting for its current request head: when
    /// the time is up, a keep-alive connection that sent nothing was merely idle, one that
    /// sent part of a head was trickling.
    var heardWhileAwaitingHead = false
    /// From the connection's first byte: an HTTP method's capital letter (plain HTTP), not a
    /// TLS record (0x16). Only a plain-HTTP connection can be answered 408 from down here.
    private var speaksPlainHTTP = false
    private var firstByteSeen = false

    /// What a plain-HTTP connection that trickled part of a head is told before it is closed.
    static let requestTimeout = Array("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".utf8)

    init(registry: ClientSocketRegistry) {
        self.registry = registry
    }

    /// Waiting for a request head now (the header timer runs).
    var isAwaitingHead: Bool { awaitingEntry != nil }
    /// Has not completed a request head or upgrade yet.
    var isUnfinished: Bool { unfinishedEntry != nil }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        registry.opened(self)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if awaitingEntry != nil { heardWhileAwaitingHead = true }
        if !firstByteSeen {
            let buffer = unwrapInboundIn(data)
            if let byte = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) {
                firstByteSeen = true
                speaksPlainHTTP = (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            }
        }
        context.fireChannelRead(data)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        registry.closed(self)
    }

    // MARK: Told by RequestHeadObserver

    /// A request head was decoded: until its response ends, the request's own rules apply (a
    /// held long-poll, a body within its limit, the read-idle cut).
    func requestHeadReceived() {
        guard context != nil else { return }
        registry.headCompleted(self)
    }

    /// A response ended; a connection that stays open waits for its next request head.
    func responseEnded() {
        guard let context, context.channel.isActive, !upgraded else { return }
        registry.awaitingNextHead(self)
    }

    /// The connection is a WebSocket now: the Engine.IO heartbeat governs it.
    func connectionUpgraded() {
        upgraded = true
        guard context != nil else { return }
        registry.headCompleted(self)
    }

    /// Closes the connection (the registry has already taken it out of its queues). A
    /// plain-HTTP connection that sent part of a request head is answered 408 first, as Node
    /// does; the answer goes if the socket takes it at once (a slowloris that does not read
    /// does not hold the close up).
    func cut(reason: ClientSocketRegistry.CutReason) {
        guard let context else { return }
        if reason == .headerTimeout, speaksPlainHTTP, heardWhileAwaitingHead {
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(bytes: Self.requestTimeout)), promise: nil)
        }
        context.close(promise: nil)
    }
}
