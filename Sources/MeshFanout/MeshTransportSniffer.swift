import NIOCore

/// First in every accepted and dialed mesh pipeline: looks at the peer's first bytes and
/// refuses a link whose peer speaks the other transport, with a reason an operator can act on
/// (one node with `tls = on`, another with `tls = off`), instead of a generic bad frame or TLS
/// error. Anything else passes untouched (garbage on a TLS mesh is NIOSSL's to refuse), and
/// the sniffer leaves the pipeline after its one decision.
final class MeshTransportSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Transport: Equatable {
        /// A TLS handshake record (ClientHello / ServerHello): 0x16, then version major 3.
        case tls
        /// A plaintext mesh HELLO: a u32 length under 64 KiB, then frame type 1.
        case plainMesh
        /// Neither: left to the next handler.
        case other
    }

    /// What `bytes` (the first bytes a peer sent) are; nil while too few arrived to tell.
    static func classify(_ bytes: [UInt8]) -> Transport? {
        guard let first = bytes.first else { return nil }
        if first == 0x16 {
            guard bytes.count >= 2 else { return nil }
            return bytes[1] == 0x03 ? .tls : .other
        }
        if first == 0x00 {
            for (index, byte) in bytes.enumerated().dropFirst() {
                switch index {
                case 1: if byte != 0x00 { return .other }
                case 4: return byte == MeshFrame.FrameType.hello.rawValue ? .plainMesh : .other
                default: continue
                }
            }
            return nil
        }
        return .other
    }

    private let expectsTLS: Bool
    private var buffered: ByteBuffer?

    init(expectsTLS: Bool) {
        self.expectsTLS = expectsTLS
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        if buffered == nil { buffered = chunk } else { buffered!.writeBuffer(&chunk) }
        let head = buffered!.getBytes(at: buffered!.readerIndex, length: min(buffered!.readableBytes, 5)) ?? []
        guard let transport = Self.classify(head) else { return }
        switch (transport, expectsTLS) {
        case (.plainMesh, true):
            // Said in the peer's own language, so its log shows why; then refused here.
            context.writeAndFlush(wrapOutboundOut(MeshFrameCodec.encode(.goodbye(MeshLinkRefusal.tlsRequired.reason),
                                                                          allocator: context.channel.allocator)),
                                  promise: nil)
            buffered = nil
            context.fireErrorCaught(MeshLinkRefusal.tlsRequired)
        case (.tls, false):
            buffered = nil
            context.fireErrorCaught(MeshLinkRefusal.tlsNotEnabled)
        default:
            let bytes = buffered!
            buffered = nil
            context.fireChannelRead(wrapInboundOut(bytes))
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}
