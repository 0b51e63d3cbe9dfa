import NIOCore
import NIOWebSocket

/// A session's WebSocket (its primary transport or its upgrade probe): a connection on this
/// node, or one another node holds and relays to this one (docs/RELAY.md). The session writes
/// already-framed bytes to either. A local socket on the session's own loop is written through
/// the session's `WebSocketEngineHandler` instead (the broadcast fast path); this type is the
/// way for every other case.
enum EngineWebSocket {
    case local(any Channel)
    case relayed(RelayedEngineSocket)

    /// Whether both name the same socket (the session asks which of its sockets a packet or a
    /// close came from).
    func isSame(as other: EngineWebSocket) -> Bool {
        switch (self, other) {
        case (.local(let mine), .local(let theirs)): return mine === theirs
        case (.relayed(let mine), .relayed(let theirs)): return mine === theirs
        default: return false
        }
    }

    /// Whether this is `channel`, a local socket.
    func isChannel(_ channel: any Channel) -> Bool {
        guard case .local(let mine) = self else { return false }
        return mine === channel
    }

    /// Below the outbound bound. A relayed socket's bound is kept by the relay, which holds
    /// the client's connection (and by the mesh link's own bound on the way there).
    var isWritable: Bool {
        switch self {
        case .local(let channel): return channel.isWritable
        case .relayed: return true
        }
    }

    /// Writes frame bytes; a local socket needs `flush()` after.
    func write(_ frame: ByteBuffer) {
        switch self {
        case .local(let channel): channel.write(frame, promise: nil)
        case .relayed(let socket): socket.send(frame)
        }
    }

    /// A reload's `outbound_buffer`, for a socket this node holds (a relayed one is bounded by
    /// the node that holds it).
    func setOutboundBound(_ bytes: Int) {
        guard case .local(let channel) = self else { return }
        _ = channel.setOption(.writeBufferWaterMark, value: .init(low: max(1, bytes / 2), high: max(2, bytes)))
    }

    func flush() {
        if case .local(let channel) = self { channel.flush() }
    }

    func writeAndFlush(_ frame: ByteBuffer) {
        switch self {
        case .local(let channel): channel.writeAndFlush(frame, promise: nil)
        case .relayed(let socket): socket.send(frame)
        }
    }

    /// Drops the socket without a word (a probe given up, or a losing one).
    func abandon() {
        switch self {
        case .local(let channel): channel.close(promise: nil)
        case .relayed(let socket): socket.close(code: .normalClosure)
        }
    }

    /// Ends the socket with a close frame carrying `code`. A local one is closed after the
    /// frame went out, or after `grace` at the latest: a client that stopped reading never lets
    /// the frame past its full buffers, and the connection, with everything queued on it, would
    /// otherwise stay open forever, outside max_connections. A relayed one: the relay writes
    /// the close frame and applies that rule to its connection.
    func close(code: WebSocketErrorCode, grace: TimeAmount) {
        switch self {
        case .local(let channel):
            channel.writeAndFlush(WebSocketWire.closeFrame(code: code, allocator: channel.allocator)).whenComplete { _ in
                channel.close(promise: nil)
            }
            channel.eventLoop.scheduleTask(in: grace) { channel.close(promise: nil) }
        case .relayed(let socket):
            socket.close(code: code)
        }
    }
}
