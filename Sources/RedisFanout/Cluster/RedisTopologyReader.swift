import ClusterConfig
import Logging
import NIOCore

/// Asks one cluster node for the slot map: connects (TLS and AUTH as the url says), sends
/// `CLUSTER SLOTS`, takes the one reply, closes. A node that does not answer within the limit
/// counts as unreachable.
// @unchecked: every var is touched only on the fanout's event loop (the link's and the timer's).
final class RedisTopologyReader: RedisLinkOwner, @unchecked Sendable {
    static let replyLimit = TimeAmount.seconds(3)

    enum Outcome {
        /// The node's reply (an array, or an error reply such as "cluster support disabled").
        case reply(RESPValue)
        /// No reply: the connection failed, closed, or timed out.
        case unreachable(String)
        /// The TLS handshake failed.
        case tls(RedisTLSFailure)
    }

    let logger: Logger
    let address: HostPort
    private let eventLoop: any EventLoop
    private let promise: EventLoopPromise<Outcome>
    private var link: RedisLink?
    private var deadline: Scheduled<Void>?
    private let presentsClientCertificate: Bool

    private init(address: HostPort, eventLoop: any EventLoop, presentsClientCertificate: Bool, logger: Logger) {
        self.address = address
        self.eventLoop = eventLoop
        self.presentsClientCertificate = presentsClientCertificate
        self.logger = logger
        self.promise = eventLoop.makePromise()
    }

    /// Reads the slot map from `address`; never fails (the outcome says what happened).
    static func read(from address: HostPort, url: RedisURL, tls: RedisTLSClient?, eventLoop: any EventLoop,
                     logger: Logger) -> EventLoopFuture<Outcome> {
        let reader = RedisTopologyReader(address: address, eventLoop: eventLoop,
                                         presentsClientCertificate: tls?.presentsClientCertificate ?? false, logger: logger)
        let link = RedisLink(role: .query, owner: reader, setup: RedisDialer.setupCommands(for: url), overTLS: tls != nil,
                             address: address)
        reader.link = link
        reader.deadline = eventLoop.assumeIsolated().scheduleTask(in: RedisDialer.connectTimeout + replyLimit) {
            reader.finish(.unreachable("no reply within \((RedisDialer.connectTimeout + replyLimit).nanoseconds / 1_000_000) ms"))
        }
        RedisDialer.dial(address, tls: tls, link: NIOLoopBound(link, eventLoop: eventLoop), on: eventLoop).whenComplete { result in
            switch result {
            case .failure(let error):
                reader.finish(.unreachable("\(error)"))
            case .success(let channel):
                if reader.finished { channel.close(promise: nil) }
                // The link reports to the reader (unowned) until its channel is gone: keep
                // the reader that long, past the close's last event.
                channel.closeFuture.whenComplete { _ in eventLoop.execute { _ = reader } }
            }
        }
        return reader.promise.futureResult
    }

    private var finished = false

    private func finish(_ outcome: Outcome) {
        guard !finished else { return }
        finished = true
        deadline?.cancel()
        link?.channel?.close(promise: nil)
        link = nil
        promise.succeed(outcome)
    }

    func linkReady(_ link: RedisLink) {
        link.send(["CLUSTER", "SLOTS"])
    }

    func received(_ value: RESPValue, on link: RedisLink) {
        finish(.reply(value))
    }

    func linkClosed(_ link: RedisLink) {
        finish(.unreachable("connection closed before the reply"))
    }

    func heard(from link: RedisLink) {}

    func linkReset(_ link: RedisLink, reason: String) {
        finish(.unreachable(reason))
    }

    func tlsFailure(for error: any Error, on link: RedisLink, duringHandshake: Bool) -> RedisTLSFailure? {
        RedisTLSFailure.classify(error, host: address.host, duringHandshake: duringHandshake,
                                 presentsClientCertificate: presentsClientCertificate)
    }

    func tlsFailed(_ failure: RedisTLSFailure, on link: RedisLink, detail: String?) {
        finish(.tls(failure))
    }
}
