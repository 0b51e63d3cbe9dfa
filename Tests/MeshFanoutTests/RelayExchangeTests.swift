import ChatCore
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// `RelayExchange` (ChatCore) as the mesh's owner side relies on it: one reply at most, an end
/// at most once and never after the reply, and an end that came before the handler asked for
/// it handed over when it does. (Here, next to its only transport, since ChatCoreTests is
/// another engineer's folder.)
@Suite struct RelayExchangeTests {
    final class Log: Sendable {
        let entries = NIOLockedValueBox<[String]>([])
        func add(_ entry: String) { entries.withLockedValue { $0.append(entry) } }
        var all: [String] { entries.withLockedValue { $0 } }
    }

    func exchange(_ log: Log) -> RelayExchange {
        RelayExchange { reply in log.add("reply \(reply.status)") }
    }

    @Test func onlyTheFirstReplyIsDelivered() {
        let log = Log()
        let exchange = exchange(log)
        #expect(!exchange.isFinished)
        exchange.reply(RelayReply(status: 200, contentType: "", body: ByteBuffer()))
        exchange.reply(RelayReply(status: 201, contentType: "", body: ByteBuffer()))
        #expect(log.all == ["reply 200"])
        #expect(exchange.isFinished)
    }

    @Test func anEndRunsOnceAndStopsTheReply() {
        let log = Log()
        let exchange = exchange(log)
        exchange.onEnd { log.add("end \($0)") }
        exchange.finish(.clientGone)
        exchange.finish(.relayLost)
        exchange.reply(RelayReply(status: 200, contentType: "", body: ByteBuffer()))
        #expect(log.all == ["end clientGone"])
    }

    @Test func anEndAfterTheReplyIsNotReported() {
        let log = Log()
        let exchange = exchange(log)
        exchange.onEnd { log.add("end \($0)") }
        exchange.reply(RelayReply(status: 200, contentType: "", body: ByteBuffer()))
        exchange.finish(.relayLost)
        #expect(log.all == ["reply 200"])
    }

    @Test func anEndBeforeTheHandlerAskedIsHandedOverWhenItDoes() {
        let log = Log()
        let exchange = exchange(log)
        exchange.finish(.relayLost)
        #expect(exchange.isFinished)
        exchange.reply(RelayReply(status: 200, contentType: "", body: ByteBuffer()))
        exchange.onEnd { log.add("end \($0)") }
        exchange.onEnd { log.add("again \($0)") }
        #expect(log.all == ["end relayLost"])
    }

    @Test func theSessionUnknownAndBadRequestRepliesAreTheEngineIOErrors() {
        #expect(RelayReply.sessionUnknown == RelayReply(status: 400, contentType: "application/json",
                                                        body: ByteBuffer(string: #"{"code":1,"message":"Session ID unknown"}"#)))
        #expect(RelayReply.badRequest == RelayReply(status: 400, contentType: "application/json",
                                                    body: ByteBuffer(string: #"{"code":3,"message":"Bad request"}"#)))
    }
}
