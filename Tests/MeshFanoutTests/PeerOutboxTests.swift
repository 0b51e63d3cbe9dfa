import ChatCore
import NIOCore
import Testing
@testable import MeshFanout

@Suite struct PeerOutboxTests {
    /// Appends PUBs with the next sequences; `now` is the sequence times 10 unless given.
    static func fill(_ outbox: inout PeerOutbox, _ count: Int, now: UInt64? = nil) -> Int {
        var dropped = 0
        for _ in 0..<count {
            let sequence = outbox.takeSequence()
            dropped += outbox.append(sequence: sequence, frame: MeshFrameCodec.encode(.ack(sequence)), now: now ?? sequence * 10)
        }
        return dropped
    }

    static func sequences(_ outbox: PeerOutbox) -> [UInt64] { outbox.entries.map(\.sequence) }

    @Test func sequencesStartAtOneAndIncreaseByOne() {
        var outbox = PeerOutbox(maxMessages: 10)
        #expect(outbox.nextSequence == 1)
        #expect((0..<5).map { _ in outbox.takeSequence() } == [1, 2, 3, 4, 5])
        #expect(outbox.nextSequence == 6)
        #expect(outbox.count == 0, "taking a sequence does not queue anything")
    }

    @Test func appendKeepsEntriesInOrderWithTheirFrameAndTime() {
        var outbox = PeerOutbox(maxMessages: 10)
        #expect(Self.fill(&outbox, 3) == 0)
        #expect(Self.sequences(outbox) == [1, 2, 3])
        #expect(outbox.entries.map(\.enqueuedAt) == [10, 20, 30])
        #expect(outbox.entries.last?.frame == MeshFrameCodec.encode(.ack(3)))
    }

    @Test func appendBeyondTheBoundDropsTheOldestAndSaysHowMany() {
        var outbox = PeerOutbox(maxMessages: 3)
        #expect(Self.fill(&outbox, 3) == 0)
        #expect(Self.fill(&outbox, 1) == 1)
        #expect(Self.sequences(outbox) == [2, 3, 4])
        #expect(Self.fill(&outbox, 5) == 5)
        #expect(Self.sequences(outbox) == [7, 8, 9])
        #expect(outbox.count == 3)
    }

    @Test func boundBelowOneIsRaisedToOne() {
        var outbox = PeerOutbox(maxMessages: 0)
        #expect(outbox.maxMessages == 1)
        #expect(Self.fill(&outbox, 2) == 1)
        #expect(Self.sequences(outbox) == [2])
    }

    @Test func acknowledgeForgetsEverythingUpToAndIncludingTheSequence() {
        var outbox = PeerOutbox(maxMessages: 10)
        _ = Self.fill(&outbox, 5)
        outbox.acknowledge(upTo: 3)
        #expect(Self.sequences(outbox) == [4, 5])
        outbox.acknowledge(upTo: 2) // an old ACK changes nothing
        #expect(Self.sequences(outbox) == [4, 5])
        outbox.acknowledge(upTo: 0)
        #expect(Self.sequences(outbox) == [4, 5])
        outbox.acknowledge(upTo: 100)
        #expect(outbox.count == 0)
        #expect(outbox.nextSequence == 6, "acknowledging does not rewind numbering")
    }

    @Test func expireDropsEntriesQueuedBeforeTheDeadline() {
        var outbox = PeerOutbox(maxMessages: 10)
        _ = Self.fill(&outbox, 5) // enqueued at 10, 20, 30, 40, 50
        #expect(outbox.expire(olderThan: 10) == 0, "the deadline itself is not older")
        #expect(outbox.expire(olderThan: 31) == 3)
        #expect(Self.sequences(outbox) == [4, 5])
        #expect(outbox.expire(olderThan: 0) == 0)
        #expect(outbox.expire(olderThan: .max) == 2)
        #expect(outbox.count == 0)
    }

    @Test func removeAllEmptiesAndReturnsTheCount() {
        var outbox = PeerOutbox(maxMessages: 10)
        _ = Self.fill(&outbox, 4)
        #expect(outbox.removeAll() == 4)
        #expect(outbox.count == 0)
        #expect(outbox.removeAll() == 0)
        #expect(outbox.takeSequence() == 5, "numbering continues")
    }
}

@Suite struct InboundSequenceTests {
    @Test func startsWithNoEpochAndNothingReceived() {
        let inbound = InboundSequence()
        #expect(inbound.epoch == 0)
        #expect(inbound.lastSequence == 0)
    }

    @Test func inOrderSequencesAreDeliveredWithoutGap() {
        var inbound = InboundSequence()
        inbound.peerConnected(epoch: 5)
        for sequence in UInt64(1)...100 {
            #expect(inbound.accept(sequence) == .deliver(gap: 0))
        }
        #expect(inbound.lastSequence == 100)
    }

    @Test func equalOrLowerSequenceIsADuplicate() {
        var inbound = InboundSequence()
        inbound.peerConnected(epoch: 5)
        _ = inbound.accept(1)
        _ = inbound.accept(2)
        _ = inbound.accept(3)
        #expect(inbound.accept(3) == .duplicate)
        #expect(inbound.accept(1) == .duplicate)
        #expect(inbound.accept(0) == .duplicate)
        #expect(inbound.lastSequence == 3)
        #expect(inbound.accept(4) == .deliver(gap: 0))
    }

    @Test func skippedSequencesAreReportedAsAGap() {
        var inbound = InboundSequence()
        inbound.peerConnected(epoch: 5)
        #expect(inbound.accept(1) == .deliver(gap: 0))
        #expect(inbound.accept(5) == .deliver(gap: 3))
        #expect(inbound.lastSequence == 5)
        #expect(inbound.accept(4) == .duplicate, "a late one behind a gap is not delivered out of order")
    }

    @Test func newEpochResetsTheNumbering() {
        var inbound = InboundSequence()
        inbound.peerConnected(epoch: 5)
        _ = inbound.accept(1)
        _ = inbound.accept(2)
        inbound.peerConnected(epoch: 6) // the peer restarted
        #expect(inbound.epoch == 6)
        #expect(inbound.lastSequence == 0)
        #expect(inbound.accept(1) == .deliver(gap: 0))
    }

    @Test func sameEpochOnReconnectKeepsTheLastSequence() {
        var inbound = InboundSequence()
        inbound.peerConnected(epoch: 5)
        _ = inbound.accept(1)
        _ = inbound.accept(2)
        inbound.peerConnected(epoch: 5) // the link dropped and came back
        #expect(inbound.lastSequence == 2)
        #expect(inbound.accept(2) == .duplicate, "a resent PUB is delivered once")
        #expect(inbound.accept(3) == .deliver(gap: 0))
    }
}
