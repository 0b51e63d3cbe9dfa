import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// On a listener's server channel (the client port, the mesh port): when `accept` fails for want of descriptors
/// (EMFILE, ENFILE) or memory, stops accepting for a moment.
///
/// NIO alone would spin: a failed accept leaves the channel's read pending, so it stays
/// registered for readability while the listening socket, its queue still full, stays
/// readable, and every loop iteration retries the accept (measured: ~1,000 failed accept4 a
/// second and a whole core). NIO's `AcceptBackoffHandler` does not help there, as it only
/// delays the *next* read, which never comes. Turning `autoRead` off unregisters the socket;
/// turning it back on after `pause` reads again. Meanwhile connections wait in the kernel's
/// accept queue, and descriptors come back as the header timer and the socket cap close
/// connections. (The cap, below the descriptor limit, makes this rare: something outside the
/// client sockets has to have eaten the reserve.)
public final class AcceptPauseHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = any Channel

    private let pause: TimeAmount
    private var resume: Scheduled<Void>?
    /// Pauses so far (for tests and logs).
    private(set) var pauses = 0

    public init(pause: TimeAmount = .milliseconds(250)) {
        self.pause = pause
    }

    public static func isDescriptorShortage(_ error: any Error) -> Bool {
        guard let io = error as? IOError else { return false }
        return [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(io.errnoCode)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard Self.isDescriptorShortage(error) else {
            context.fireErrorCaught(error)
            return
        }
        guard resume == nil else { return }
        pauses += 1
        try? context.channel.syncOptions?.setOption(.autoRead, value: false)
        resume = context.eventLoop.assumeIsolated().scheduleTask(in: pause) { [self] in
            resume = nil
            try? context.channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        resume?.cancel()
        resume = nil
        context.fireChannelInactive()
    }
}
