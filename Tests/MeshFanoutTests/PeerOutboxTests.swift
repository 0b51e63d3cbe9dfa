import ChatCore
import NIOCore
import Testing
@testable import MeshFanout

@Suite struct PeerOutboxTests {
    /// Appends PUBs with the next sequences, enqueued at the sequence times 10; returns the
    /// total that fell out.
    static func fill(_ outbox: inout PeerOutbox, _ count: Int, written: Bool = false) -> PeerOutbox.Dropped {
        var dropped = PeerOutbox.Dropped()
        for _ in 0..<count {
            let sequence = outbox.takeSequence()
            let out = outbox.append(sequence: sequence, frame: MeshFrameCodec.encode(.ack(sequence)),
                                    now: sequence * 10, written: written)
            dropped.unsent += out.unsent
            dropped.unconfirmed += out.unconfirmed
        }
        return dropped
    }

    static func sequences(_ outbox: PeerOutbox) -> [UInt64] { outbox.entries.map(\.sequence) }

    static func dropped(unsent: Int = 0, unconfirmed: Int = 0) -> PeerOutbox.Dropped {
        var dropped = PeerOutbox.Dropped()
        dropped.unsent = unsent
        dropped.unconfirmed = unconfirmed
        return dropped
    }

    @Test func sequencesStartAtOneAndIncreaseByOne() {
        var outbox = PeerOutbox(maxMessages: 10)
        #expect(outbox.nextSequence == 1)
        #expect((0..<5).map { _ in outbox.takeSequence() } == [1, 2, 3, 4, 5])
        #expect(outbox.nextSequence == 6)
        #expect(outbox.count == 0, "taking a sequence does not queue anything")
    }

    @Test func appendKeepsEntriesInOrderWithTheirFrameAndTime() {
        var outbox = PeerOutbox(maxMessages: 10)
        #expect(Self.fill(&outbox, 3) == Self.dropped())
        #expect(Self.sequences(outbox) == [1, 2, 3])
        #expect(outbox.entries.map(\.enqueuedAt) == [10, 20, 30])
        #expect(outbox.entries.last?.frame == MeshFrameCodec.encode(.ack(3)))
    }

    @Test func appendBeyondTheBoundDropsTheOldestAndSaysHowMany() {
        var outbox = PeerOutbox(maxMessages: 3)
        #expect(Self.fill(&outbox, 3).total == 0)
        #expect(Self.fill(&outbox, 1).total == 1)
        #expect(Self.sequences(outbox) == [2, 3, 4])
        #expect(Self.fill(&outbox, 5).total == 5)
        #expect(Self.sequences(outbox) == [7, 8, 9])
        #expect(outbox.count == 3)
    }

    @Test func droppedEntriesAreCountedAsUnsentOrUnconfirmed() {
        var outbox = PeerOutbox(maxMessages: 2)
        _ = Self.fill(&outbox, 2, written: true)          // 1, 2 went out on a link
        #expect(Self.fill(&outbox, 1) == Self.dropped(unconfirmed: 1))          // 1 falls out
        #expect(Self.fill(&outbox, 2) == Self.dropped(unsent: 1, unconfirmed: 1)) // 2, then 3
        #expect(Self.fill(&outbox, 1).total == 1)
    }

    @Test func markAllWrittenTurnsLaterDropsIntoUnconfirmed() {
        var outbox = PeerOutbox(maxMessages: 3)
        _ = Self.fill(&outbox, 3)
        #expect(outbox.entries.allSatisfy { !$0.written })
        outbox.markAllWritten()
        #expect(outbox.entries.allSatisfy { $0.written })
        #expect(outbox.expire(olderThan: .max) == Self.dropped(unconfirmed: 3))
    }

    @Test func boundBelowOneIsRaisedToOne() {
        var outbox = PeerOutbox(maxMessages: 0)
        #expect(outbox.maxMessages == 1)
        #expect(Self.fill(&outbox, 2).total == 1)
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
        #expect(outbox.expire(olderThan: 10).total == 0, "the deadline itself is not older")
        #expect(outbox.expire(olderThan: 31) == Self.dropped(unsent: 3))
        #expect(Self.sequences(outbox) == [4, 5])
        #expect(outbox.expire(olderThan: 0).total == 0)
        #expect(outbox.expire(olderThan: .max).total == 2)
        #expect(outbox.count == 0)
    }

    @Test func restartEmptiesReturnsTheCountAndNumbersFromOneAgain() {
        var outbox = PeerOutbox(maxMessages: 10)
        _ = Self.fill(&outbox, 4)
        #expect(outbox.restart() == 4)
        #expect(outbox.count == 0)
        #expect(outbox.takeSequence() == 1)
        #expect(outbox.restart() == 0)
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
