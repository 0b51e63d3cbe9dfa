import NIOCore
import Testing
@testable import RedisFanout

/// TCP delivers replies in arbitrary pieces: a stream of several replies must decode to the
/// same values however it is cut.
@Suite struct RESPStreamTests {
    let decoder = RESPDecoder()

    @Test func sampleStreamDecodesInOneBuffer() throws {
        var stream = buffer(sampleWire)
        #expect(try drain(decoder, &stream) == sampleValues)
        #expect(stream.readableBytes == 0)
    }

    @Test func eachSampleDecodesAlone() throws {
        for (wire, value) in sampleStream {
            let (decoded, left) = try decodeOne(wire)
            #expect(decoded == value, "\(wire.debugDescription)")
            #expect(left == 0)
        }
    }

    @Test func streamSplitAtEveryByteBoundaryYieldsTheSameValues() throws {
        let bytes = sampleWire
        for split in 0...bytes.count {
            var stream = buffer(Array(bytes[..<split]))
            var values = try drain(decoder, &stream)
            stream.writeBytes(bytes[split...])
            values += try drain(decoder, &stream)
            #expect(values == sampleValues, "split at \(split)")
            #expect(stream.readableBytes == 0, "split at \(split)")
        }
    }

    @Test func streamSplitAtEveryPairOfBoundariesYieldsTheSameValues() throws {
        // Three pieces: every (i, j) with i <= j, on a shorter stream so it stays quick.
        let bytes = Array(sampleStream[5...13].flatMap { Array($0.wire.utf8) })
        let expected = Array(sampleValues[5...13])
        for i in 0...bytes.count {
            for j in i...bytes.count {
                var stream = buffer(Array(bytes[..<i]))
                var values = try drain(decoder, &stream)
                stream.writeBytes(bytes[i..<j])
                values += try drain(decoder, &stream)
                stream.writeBytes(bytes[j...])
                values += try drain(decoder, &stream)
                guard values == expected, stream.readableBytes == 0 else {
                    Issue.record("split at \(i), \(j): \(values.count) values, \(stream.readableBytes) left")
                    return
                }
            }
        }
    }

    @Test func streamFedOneByteAtATimeYieldsTheSameValues() throws {
        var stream = ByteBufferAllocator().buffer(capacity: 0)
        var values: [RESPValue] = []
        for byte in sampleWire {
            stream.writeInteger(byte)
            values += try drain(decoder, &stream)
        }
        #expect(values == sampleValues)
        #expect(stream.readableBytes == 0)
    }

    @Test func streamFedOneByteAtATimeWithReadBytesDiscarded() throws {
        // As RedisLink does: keep one buffer, discard what was read after each chunk.
        var stream = ByteBufferAllocator().buffer(capacity: 0)
        var values: [RESPValue] = []
        for byte in sampleWire {
            stream.writeInteger(byte)
            values += try drain(decoder, &stream)
            stream.discardReadBytes()
        }
        #expect(values == sampleValues)
    }

    @Test func streamFedInSeededRandomChunksYieldsTheSameValues() throws {
        var generator = SplitMix64(seed: 0x5EED_0100)
        let bytes = sampleWire
        for _ in 0..<300 {
            var stream = ByteBufferAllocator().buffer(capacity: 0)
            var values: [RESPValue] = []
            var index = 0
            while index < bytes.count {
                let size = Int.random(in: 1...32, using: &generator)
                let end = min(bytes.count, index + size)
                stream.writeBytes(bytes[index..<end])
                index = end
                values += try drain(decoder, &stream)
            }
            #expect(values == sampleValues)
        }
    }

    @Test func thousandsOfPushesInOneBuffer() throws {
        // A burst as a busy room produces it: 5,000 message pushes back to back.
        var wire = ""
        for i in 0..<5_000 {
            wire += messagePush(channel: "r1", payload: #"{"event":"broadcast_say","data":{"username":"u","text":"\#(i)"}}"#)
        }
        var stream = buffer(wire)
        let values = try drain(decoder, &stream)
        #expect(values.count == 5_000)
        #expect(values.last == .array([bulk("message"), bulk("r1"), bulk(#"{"event":"broadcast_say","data":{"username":"u","text":"4999"}}"#)]))
        #expect(stream.readableBytes == 0)
    }

    @Test func malformedReplyAfterAPartialOneIsStillDetected() {
        // The error surfaces once the bad byte arrives, whatever the cut before it.
        let bytes = Array("+OK\r\n$3\r\nabcXY".utf8)
        for split in 0...bytes.count {
            var stream = buffer(Array(bytes[..<split]))
            var values: [RESPValue] = []
            var caught: RESPError?
            do {
                try drain(decoder, &stream, into: &values)
                stream.writeBytes(bytes[split...])
                try drain(decoder, &stream, into: &values)
            } catch {
                caught = error
            }
            #expect(values == [.simpleString("OK")], "split at \(split)")
            #expect(caught == .missingCRLF, "split at \(split)")
        }
    }
}
