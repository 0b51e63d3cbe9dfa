/// What a fanout may need from the process when it starts: sockets systemd passed in.
public struct FanoutStartContext: Sendable {
    /// A listening socket for the mesh, inherited through socket activation (else the fanout
    /// binds its configured address).
    public var inheritedMeshSocket: CInt?

    public init(inheritedMeshSocket: CInt? = nil) {
        self.inheritedMeshSocket = inheritedMeshSocket
    }
}
