import Testing
@testable import ChatCore

@Suite("LocalRoom")
struct LocalRoomTests {
    private func names(_ list: LocalRoom) -> [String] {
        list.members.map { ($0 as! FakeMember).name }
    }

    @Test func insertAppendsInOrder() {
        let list = LocalRoom()
        let a = FakeMember("A"), b = FakeMember("B"), c = FakeMember("C")
        #expect(list.isEmpty)
        list.insert(a); list.insert(b); list.insert(c)
        #expect(names(list) == ["A", "B", "C"])
        #expect(list.count == 3)
        #expect(!list.isEmpty)
    }

    @Test func swapRemoveKeepsIndicesRight() {
        let list = LocalRoom()
        let a = FakeMember("A"), b = FakeMember("B"), c = FakeMember("C")
        list.insert(a); list.insert(b); list.insert(c)
        list.remove(a) // C moves into A's slot
        #expect(names(list) == ["C", "B"])
        list.remove(c) // C is found at its new index; B moves to 0
        #expect(names(list) == ["B"])
        list.remove(b)
        #expect(list.isEmpty)
        #expect(list.count == 0)
    }

    @Test func removingTheLastElementNeedsNoSwap() {
        let list = LocalRoom()
        let a = FakeMember("A"), b = FakeMember("B"), c = FakeMember("C")
        list.insert(a); list.insert(b); list.insert(c)
        list.remove(c)
        #expect(names(list) == ["A", "B"])
        list.remove(a)
        #expect(names(list) == ["B"])
        list.insert(c)
        #expect(names(list) == ["B", "C"])
        list.remove(b)
        #expect(names(list) == ["C"])
    }

    @Test func duplicateInsertIsIgnored() {
        let list = LocalRoom()
        let a = FakeMember("A"), b = FakeMember("B")
        list.insert(a); list.insert(a); list.insert(b); list.insert(a)
        #expect(names(list) == ["A", "B"])
        list.remove(a)
        #expect(names(list) == ["B"])
    }

    @Test func removingANonMemberOrRemovingTwiceIsIgnored() {
        let list = LocalRoom()
        let a = FakeMember("A"), b = FakeMember("B"), stranger = FakeMember("X")
        list.insert(a); list.insert(b)
        list.remove(stranger)
        #expect(names(list) == ["A", "B"])
        list.remove(a)
        list.remove(a)
        #expect(names(list) == ["B"])
    }

    @Test func reinsertAfterRemoveWorks() {
        let list = LocalRoom()
        let a = FakeMember("A"), b = FakeMember("B")
        list.insert(a); list.insert(b)
        list.remove(a)
        list.insert(a)
        #expect(names(list) == ["B", "A"])
        list.remove(b)
        list.remove(a)
        #expect(list.isEmpty)
    }

    @Test func manyInsertsAndRemovesKeepEveryRecordedIndexRight() {
        let list = LocalRoom()
        let members = (0..<50).map { FakeMember("m\($0)") }
        for member in members { list.insert(member) }
        var expected = members.map(\.name)
        // A scattered removal order: a wrong recorded index would remove the wrong member.
        var order = Array(0..<50)
        var seed: UInt64 = 42
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            order.swapAt(i, Int(seed >> 33) % (i + 1))
        }
        for index in order {
            list.remove(members[index])
            expected.removeAll { $0 == members[index].name }
            #expect(Set(names(list)) == Set(expected))
            #expect(list.count == expected.count)
        }
        #expect(list.isEmpty)
    }

    @Test func joinTimesFollowTheirMembersThroughSwapRemoval() {
        let list = LocalRoom()
        let a = FakeMember("A"), b = FakeMember("B"), c = FakeMember("C")
        list.insert(a, joinedAt: 10)
        list.insert(b, joinedAt: 20)
        list.insert(c, joinedAt: 30)
        list.remove(a) // C moves into A's slot and must keep its own time
        #expect(list.members(joinedBefore: 25).map { ($0 as! FakeMember).name } == ["B"])
        #expect(Set(list.members(joinedBefore: 30).map { ($0 as! FakeMember).name }) == ["B", "C"])
        #expect(list.lastJoinAt == 30)
    }
}
