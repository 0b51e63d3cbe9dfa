import ClusterConfig
import Logging
import NIOCore
import NIOSSL
import NIOTLS

/// One connection to Redis: it sends the setup commands (AUTH, SELECT) and checks their `+OK`,
/// then hands every reply to its owner (`RedisLinkOwner`: a fanout, or the cluster's topology
/// reader). A malformed reply or a refused setup closes the
/// connection with the reason logged; the fanout reconnects. Runs on the fanout's event loop.
///
/// On a `rediss://` connection (a `NIOSSLClientHandler` before it) the setup waits for the
/// TLS handshake, which has a deadline; a TLS failure goes to the fanout as a
/// `RedisTLSFailure` (logged once per reason, counted), not as a plain connection error.
final class RedisLink: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A plaintext Redis port waits for a command and never answers a TLS hello.
    static let tlsHandshakeLimit = TimeAmount.seconds(3)

    enum Role: String {
        case subscriber, publisher
        /// A request/reply connection for one question (`CLUSTER SLOTS`), then closed.
        case query
    }

    let role: Role
    /// The node this link dials (a cluster has many; the single-node fanout rotates seeds).
    let address: HostPort?
    private unowned let owner: any RedisLinkOwner
    private let setup: [[RESPArgument]]
    private var setupRepliesOwed: Int
    private let decoder = RESPDecoder()
    private var inbound: ByteBuffer?
    private(set) var channel: (any Channel)?
    private(set) var isReady = false
    private var closed = false
    /// Behind TLS: the setup waits for `TLSUserEvent.handshakeCompleted`.
    private let overTLS: Bool
    private var handshakeDone = false
    private var handshakeDeadline: Scheduled<Void>?
    /// The TLS failure that ended this connection, once reported.
    private(set) var tlsFailure: RedisTLSFailure?

    init(role: Role, owner: any RedisLinkOwner, setup: [[RESPArgument]], overTLS: Bool = false, address: HostPort? = nil) {
        self.role = role
        self.address = address
        self.owner = owner
        self.setup = setup
        self.setupRepliesOwed = setup.count
        self.overTLS = overTLS
    }

    func channelActive(context: ChannelHandlerContext) {
        channel = context.channel
        if overTLS {
            handshakeDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: Self.tlsHandshakeLimit) { [self] in
                failTLS(.handshakeTimeout(Self.tlsHandshakeLimit))
            }
        } else {
            startSetup(context: context)
        }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event, !handshakeDone, !closed {
            handshakeDone = true
            handshakeDeadline?.cancel()
            startSetup(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func startSetup(context: ChannelHandlerContext) {
        if setup.isEmpty {
            becomeReady()
        } else {
            var buffer = context.channel.allocator.buffer(capacity: 128)
            for command in setup { RESPEncoder.writeCommand(command, into: &buffer) }
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }
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
        handshakeDeadline?.cancel()
        if overTLS, !handshakeDone, !closed { failTLS(.closedDuringHandshake()) }
        closed = true
        owner.linkClosed(self)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if overTLS, let failure = owner.tlsFailure(for: error, on: self, duringHandshake: !handshakeDone) {
            // NIOSSL may follow the first error with more (e.g. an unclean shutdown): the
            // first says why.
            if !closed { failTLS(failure, detail: "\(error)") }
            return
        }
        guard !closed else { return }
        owner.logger.warning("redis connection error", metadata: ["role": "\(role.rawValue)", "address": "\(addressText)", "error": "\(error)"])
        context.close(promise: nil)
    }

    /// Ends a connection whose TLS failed; the fanout logs the reason (once) and counts it.
    private func failTLS(_ failure: RedisTLSFailure, detail: String? = nil) {
        guard !closed else { return }
        closed = true
        handshakeDeadline?.cancel()
        tlsFailure = failure
        owner.tlsFailed(failure, on: self, detail: detail)
        channel?.close(promise: nil)
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
        owner.logger.error("redis connection reset", metadata: ["role": "\(role.rawValue)", "address": "\(addressText)", "reason": "\(reason)"])
        owner.linkReset(self, reason: reason)
        channel?.close(promise: nil)
    }

    var addressText: String { address.map(\.description) ?? "?" }

    static func describe(_ value: RESPValue) -> String {
        switch value {
        case .error(let message): return message
        case .simpleString(let text): return "+\(text)"
        default: return "\(value)"
        }
    }
}
