import Logging
import NIOCore

/// One connection to Redis: it sends the setup commands (AUTH, SELECT) and checks their `+OK`,
/// then hands every reply to `RedisFanout`. A malformed reply or a refused setup closes the
/// connection with the reason logged; the fanout reconnects. Runs on the fanout's event loop.
final class RedisLink: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Role: String {
        case subscriber, publisher
    }

    let role: Role
    private unowned let owner: RedisFanout
    private let setup: [[RESPArgument]]
    private var setupRepliesOwed: Int
    private let decoder = RESPDecoder()
    private var inbound: ByteBuffer?
    private(set) var channel: (any Channel)?
    private(set) var isReady = false
    private var closed = false

    init(role: Role, owner: RedisFanout, setup: [[RESPArgument]]) {
        self.role = role
        self.owner = owner
        self.setup = setup
        self.setupRepliesOwed = setup.count
    }

    func channelActive(context: ChannelHandlerContext) {
        channel = context.channel
        if setup.isEmpty {
            becomeReady()
        } else {
            var buffer = context.channel.allocator.buffer(capacity: 128)
            for command in setup { RESPEncoder.writeCommand(command, into: &buffer) }
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        if inbound == nil { inbound = chunk } else { inbound!.writeBuffer(&chunk) }
        while !closed, inbound != nil {
            let value: RESPValue?
            do {
                value = try decoder.next(from: &inbound!)
            } catch {
                return fail("malformed reply from Redis: \(error)")
            }
            guard let value else { break }
            owner.heard(from: self)
            if setupRepliesOwed > 0 {
                setupRepliesOwed -= 1
                guard case .simpleString("OK") = value else {
                    return fail("Redis refused setup: \(Self.describe(value))")
                }
                if setupRepliesOwed == 0 { becomeReady() }
            } else {
                owner.received(value, on: self)
            }
        }
        if inbound?.readableBytes == 0 { inbound = nil } else { inbound?.discardReadBytes() }
    }

    private func becomeReady() {
        isReady = true
        owner.linkReady(self)
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        owner.linkClosed(self)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        owner.logger.warning("redis connection error", metadata: ["role": "\(role.rawValue)", "error": "\(error)"])
        context.close(promise: nil)
    }

    func send(_ command: [RESPArgument], flush: Bool = true) {
        guard let channel, !closed else { return }
        let buffer = RESPEncoder.command(command)
        if flush { channel.writeAndFlush(buffer, promise: nil) } else { channel.write(buffer, promise: nil) }
    }

    func flush() {
        channel?.flush()
    }

    func fail(_ reason: String) {
        guard !closed else { return }
        closed = true
        owner.logger.error("redis connection reset", metadata: ["role": "\(role.rawValue)", "reason": "\(reason)"])
        owner.metrics.errors.increment()
        channel?.close(promise: nil)
    }

    static func describe(_ value: RESPValue) -> String {
        switch value {
        case .error(let message): return message
        case .simpleString(let text): return "+\(text)"
        default: return "\(value)"
        }
    }
}
