import ClusterConfig
import NIOCore
import Testing
@testable import MeshFanout

/// A room table larger than `max_frame` reaches a peer as one SNAPSHOT and SUBs, each under
/// the limit, instead of one frame the peer must refuse (which dropped the link and, redialed,
/// was sent again ~12 times a second: docs/SCALE.md).
@Suite struct RoomTableSplitTests {
    /// A frame's body length: what the receiver compares with `max_frame`.
    static func bodyLength(_ frame: MeshFrame) -> Int {
        MeshFrameCodec.encode(frame).readableBytes - MeshFrameCodec.headerLength
    }

    static func rooms(_ count: Int) -> [String] {
        (0..<count).map { "room-\($0)-with-a-longish-id" }
    }

    @Test(arguments: [0, 1, 40, 400])
    func everyRoomIsInExactlyOneFrameAndEveryFrameFits(_ count: Int) {
        let rooms = Self.rooms(count)
        let maxFrame = 512
        let announcement = InterestAnnouncement(rooms: rooms, maxFrame: maxFrame)
        guard case .snapshot(let snapshot) = announcement.frames.first else {
            Issue.record("the first frame is not a SNAPSHOT")
            return
        }
        var announced = snapshot
        for frame in announcement.frames.dropFirst() {
            guard case .sub(let room) = frame else {
                Issue.record("not a SUB after the SNAPSHOT: \(frame)")
                continue
            }
            announced.append(room)
        }
        #expect(announced.sorted() == rooms.sorted())
        #expect(announcement.frames.allSatisfy { Self.bodyLength($0) <= maxFrame })
        #expect(announcement.unsendable.isEmpty)
        if count >= 40 { #expect(announcement.frames.count > 1) } else { #expect(announcement.frames.count == 1) }
    }

    @Test func aSnapshotOfExactlyMaxFrameIsOneFrame() {
        let rooms = Self.rooms(30)
        let exact = Self.bodyLength(.snapshot(rooms))
        #expect(InterestAnnouncement(rooms: rooms, maxFrame: exact).frames == [.snapshot(rooms)])
        let oneLess = InterestAnnouncement(rooms: rooms, maxFrame: exact - 1)
        #expect(oneLess.frames == [.snapshot(Array(rooms.dropLast())), .sub(rooms.last!)])
    }

    @Test func aRoomIdTooLongForAnyFrameIsLeftOutAndReported() {
        let long = String(repeating: "x", count: 600)
        let announcement = InterestAnnouncement(rooms: ["a", long, "b"], maxFrame: 512)
        #expect(announcement.frames == [.snapshot(["a", "b"])])
        #expect(announcement.unsendable == [long])
    }

    @Test func aPeerLearnsEveryRoomOfATableLargerThanMaxFrameAndTheLinkStaysUp() throws {
        var settings = MeshSettings()
        settings.maxFrame = 512
        let a1 = LinkUpTestNode("a1", mesh: settings), a2 = LinkUpTestNode("a2", mesh: settings)
        let rooms1 = Self.rooms(300), rooms2 = Self.rooms(200).map { "a2-" + $0 }
        for room in rooms1 { a1.mesh.subscribe(room: room) }
        for room in rooms2 { a2.mesh.subscribe(room: room) }
        a1.loop.run()
        a2.loop.run()

        let dialed = try a1.link(role: .dialer(expectedPeer: "a2"))
        let accepted = try a2.link(role: .acceptor)
        let seen = try shuttle((a1, dialed), (a2, accepted))
        #expect(dialed.isActive && accepted.isActive)
        #expect(a1.mesh.peerStatus().up == ["a2"])
        #expect(a2.mesh.peerStatus().up == ["a1"])
        #expect(a2.mesh.peers["a1"]?.interest == Set(rooms1))
        #expect(a1.mesh.peers["a2"]?.interest == Set(rooms2))
        #expect((seen.aToB + seen.bToA).allSatisfy { Self.bodyLength($0.frame) <= settings.maxFrame })
        #expect(seen.aToB.contains { if case .sub = $0.frame { true } else { false } })

        // A SUB and an UNSUB after link-up still act on the table the split announcement built.
        a1.mesh.unsubscribe(room: rooms1[0])
        a1.mesh.subscribe(room: "late")
        try shuttle((a1, dialed), (a2, accepted))
        #expect(a2.mesh.peers["a1"]?.interest == Set(rooms1.dropFirst() + ["late"]))
        #expect(dialed.isActive && accepted.isActive)
    }
}
