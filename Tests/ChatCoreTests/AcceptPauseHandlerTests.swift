import Glibc
import NIOCore
import NIOEmbedded
import Testing

@testable import ChatCore

/// Running out of descriptors pauses accepting once per pause, not once per failed accept;
/// other errors go on down the pipeline.
struct AcceptPauseHandlerTests {
    final class ErrorRecorder: ChannelInboundHandler {
        typealias InboundIn = Any
        var errors: [any Error] = []
        func errorCaught(context: ChannelHandlerContext, error: any Error) { errors.append(error) }
    }

    @Test func aDescriptorShortagePausesOnceUntilThePauseEnds() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let handler = AcceptPauseHandler(pause: .milliseconds(250))
        let recorder = ErrorRecorder()
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.pipeline.syncOperations.addHandler(recorder)
        let emfile = IOError(errnoCode: EMFILE, reason: "accept")
        channel.pipeline.fireErrorCaught(emfile)
        channel.pipeline.fireErrorCaught(emfile)   // the retry that would have spun
        #expect(handler.pauses == 1)
        loop.advanceTime(by: .milliseconds(250))
        channel.pipeline.fireErrorCaught(IOError(errnoCode: ENFILE, reason: "accept"))
        #expect(handler.pauses == 2)
        #expect(recorder.errors.isEmpty, "a shortage is handled here, not passed on")
        channel.pipeline.fireErrorCaught(IOError(errnoCode: ECONNABORTED, reason: "accept"))
        #expect(recorder.errors.count == 1 && handler.pauses == 2)
    }
}
