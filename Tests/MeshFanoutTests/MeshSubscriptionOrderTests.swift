import ClusterConfig
import Dispatch
import Logging
import NIOCore
import NIOPosix
import Testing
@testable import MeshFanout

/// The hub counts a room's members under a lock and tells the mesh "subscribe" on 0 → 1 and
/// "unsubscribe" on 1 → 0, from whichever event loop the member is on. The mesh must apply
/// them in that order, also when one comes from its own loop while the other is still queued.
struct MeshSubscriptionOrderTests {
    @Test func aRoomThatEmptiesOnAnotherLoopAndRefillsOnTheMeshLoopStaysSubscribed() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let loops = Array(group.makeIterator())
        let meshLoop = loops[0]
        let mesh = MeshFanout(config: TestNode.config, localNode: TestNode.config.node(named: "a1")!, eventLoop: meshLoop,
                              logger: Logger(label: "mesh-test", factory: { _ in SwiftLogNoOpLogHandler() }))
        mesh.start(delivery: RecordingDelivery())
        mesh.subscribe(room: "r")  // the room's first member, on another loop

        let onMeshLoop = DispatchSemaphore(value: 0)
        let unsubscribeQueued = DispatchSemaphore(value: 0)
        let refilled = meshLoop.submit {
            onMeshLoop.signal()
            unsubscribeQueued.wait()
            mesh.subscribe(room: "r")  // a new first member, on the mesh loop itself
        }
        onMeshLoop.wait()
        mesh.unsubscribe(room: "r")  // the last member left, on another loop: counted first
        unsubscribeQueued.signal()
        try refilled.wait()
        try meshLoop.submit {}.wait()
        try meshLoop.submit {}.wait()

        let rooms = try meshLoop.submit { Mirror(reflecting: mesh).descendant("localRooms") as! Set<String> }.wait()
        #expect(rooms == ["r"])
    }
}
