import ClusterConfig
import NIOCore
import NIOPosix
import NIOSSL

/// A minimal HTTP/1.1 client for one thing: `GET /healthz` on a node, with a hard
/// deadline for connect, request and answer together.
public final class HealthzClient: Sendable {
    private let group: any EventLoopGroup
    /// For nodes that serve HTTPS (`[node NAME] tls_cert`). The supervisor asks its own child
    /// on this host how it is doing: it needs the answer, not the node's identity, and the
    /// client certificate may come from any CA (a public one, with DNS names only), so it does
    /// not verify. `nil` if the TLS library could not make a context (probes then fail).
    private let tlsContext: NIOSSLContext?

    public init(group: any EventLoopGroup) {
        self.group = group
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        configuration.applicationProtocols = ["http/1.1"]
        self.tlsContext = try? NIOSSLContext(configuration: configuration)
    }

    /// Where to reach a node that listens on `listen`: a wildcard address is reached
    /// through loopback.
    public static func target(for listen: HostPort) -> (host: String, port: Int) {
        if let ip = IPAddress(listen.host), ip.isWildcard {
            return (ip.isIPv4 ? "127.0.0.1" : "::1", listen.port)
        }
        return (listen.host, listen.port)
    }

    public static func request(for listen: HostPort) -> String {
        "GET /healthz HTTP/1.1\r\nHost: \(listen)\r\nUser-Agent: chatmesh-cluster\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    }

    /// Calls `completion` exactly once, on an event loop, within about `timeout`. `tls`: the
    /// node serves HTTPS on `listen`.
    public func fetch(
        _ listen: HostPort, tls: Bool = false, timeout: TimeAmount,
        completion: @escaping @Sendable (Result<HealthzReport, HealthzError>) -> Void
    ) {
        let loop = group.next()
        let tlsContext = self.tlsContext
        if tls, tlsContext == nil {
            loop.execute { completion(.failure(HealthzError("no TLS context for an HTTPS node"))) }
            return
        }
        let (host, port) = Self.target(for: listen)
        let request = Self.request(for: listen)
        loop.execute {
            // The deadline, the connection and its handler all run on `loop`, where the probe lives.
            let probe = NIOLoopBound(Probe(completion: completion), eventLoop: loop)
            let deadline = loop.scheduleTask(in: timeout) {
                probe.value.finish(.failure(HealthzError("no answer within \(timeout.nanoseconds / 1_000_000) ms")))
            }
            probe.value.onFinish = { deadline.cancel() }
            ClientBootstrap(group: loop)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if tls, let tlsContext {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tlsContext, serverHostname: nil))
                        }
                        let collector = ResponseCollector(request: request, probe: probe.value)
                        try channel.pipeline.syncOperations.addHandler(collector)
                    }
                }
                .connect(host: host, port: port)
                .whenComplete { result in
                    let probe = probe.value
                    switch result {
                    case .success(let channel):
                        if probe.isFinished {
                            channel.close(promise: nil)
                        } else {
                            probe.channel = channel
                        }
                    case .failure(let error):
                        probe.finish(.failure(HealthzError("cannot connect: \(error)")))
                    }
                }
        }
    }
}

/// One poll's state; lives on its event loop (reached from closures through `NIOLoopBound`).
private final class Probe {
    private let completion: @Sendable (Result<HealthzReport, HealthzError>) -> Void
    private(set) var isFinished = false
    var onFinish: (() -> Void)?
    var channel: (any Channel)?

    init(completion: @escaping @Sendable (Result<HealthzReport, HealthzError>) -> Void) {
        self.completion = completion
    }

    func finish(_ result: Result<HealthzReport, HealthzError>) {
        guard !isFinished else { return }
        isFinished = true
        onFinish?()
        onFinish = nil
        channel?.close(promise: nil)
        channel = nil
        completion(result)
    }
}

/// Sends the request once connected, keeps everything the node answers, and parses it
/// when the node closes the connection.
private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let request: String
    private let probe: Probe
    private var received: [UInt8] = []

    init(request: String, probe: Probe) {
        self.request = request
        self.probe = probe
    }

    func channelActive(context: ChannelHandlerContext) {
        let buffer = context.channel.allocator.buffer(string: request)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        received += buffer.readBytes(length: buffer.readableBytes) ?? []
        if received.count > HealthzResponse.maxSize {
            probe.finish(.failure(HealthzError("answer larger than \(HealthzResponse.maxSize) bytes")))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        probe.finish(HealthzResponse.parse(received))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // The answer ends where the node closes the connection; a TLS peer that closes without
        // close_notify has still said all it had to (channelInactive parses it).
        if let tlsError = error as? NIOSSLError, case .uncleanShutdown = tlsError { return }
        probe.finish(.failure(HealthzError("\(error)")))
        context.close(promise: nil)
    }
}
