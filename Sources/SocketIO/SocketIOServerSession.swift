import EngineIO

/// The server side of one client's Socket.IO connection, without sockets: it turns Engine.IO
/// messages into namespace connects, events and disconnects, reassembles binary packets, and
/// answers CONNECT to an unknown namespace the way the official server does.
public struct SocketIOServerSession: Sendable {
    public enum Input: Equatable, Sendable {
        /// CONNECT to a served namespace; the application accepts (`acceptConnect`) or refuses.
        case connect(namespace: String, auth: JSONValue?)
        case event(name: String, arguments: [JSONValue], ackID: Int?)
        case disconnect(namespace: String)
        /// A packet text to send straight back (CONNECT_ERROR for an unknown namespace).
        case reply(String)
    }

    public let namespaces: Set<String>
    /// Connected namespaces: `/` as a flag and others in a set, so the usual client (only `/`)
    /// allocates nothing here. The socket sid is not kept: it is only ever sent, once.
    private var rootConnected = false
    private var otherConnected: Set<String> = []
    private var reassembler = BinaryReassembler()

    /// Shared by every session that serves only `/`, so none allocates its own set.
    public static let rootNamespaceOnly: Set<String> = ["/"]

    public init(namespaces: Set<String> = SocketIOServerSession.rootNamespaceOnly) {
        self.namespaces = namespaces
    }

    public mutating func receive(_ payload: EnginePacket.Payload) throws(SocketIOError) -> Input? {
        let complete: SocketPacket?
        switch payload {
        case .text(let text):
            complete = try reassembler.receive(try SocketPacketCodec.decode(text[...]))
        case .binary(let bytes):
            complete = try reassembler.receive(attachment: bytes)
        }
        guard let packet = complete else { return nil }
        return handle(packet)
    }

    private mutating func handle(_ packet: SocketPacket) -> Input? {
        switch packet.type {
        case .connect:
            guard namespaces.contains(packet.namespace) else {
                return .reply(Self.connectError(namespace: packet.namespace, message: "Invalid namespace"))
            }
            // A repeated CONNECT to a connected namespace is ignored, as by the Node server.
            guard !isConnected(to: packet.namespace) else { return nil }
            return .connect(namespace: packet.namespace, auth: packet.data)
        case .event, .binaryEvent:
            guard isConnected(to: packet.namespace), let (name, arguments) = packet.eventNameAndArguments else { return nil }
            return .event(name: name, arguments: arguments, ackID: packet.ackID)
        case .disconnect:
            guard setConnected(packet.namespace, false) else { return nil }
            return .disconnect(namespace: packet.namespace)
        case .ack, .binaryAck, .connectError:
            // The server asks clients for no acks, and clients send no CONNECT_ERROR.
            return nil
        }
    }

    /// Marks the namespace connected and returns the `40{"sid":…}` answer.
    public mutating func acceptConnect(namespace: String, sid: String) -> String {
        setConnected(namespace, true)
        return SocketPacketCodec.encode(SocketPacket(type: .connect, namespace: namespace, data: .object([("sid", .string(sid))])))
    }

    /// Marks the namespace connected and returns the `40{"sid":…,"pid":…}` answer of a server
    /// with connection-state recovery: `pid` is the private id the client reconnects with.
    public mutating func acceptConnect(namespace: String, sid: String, pid: String) -> String {
        setConnected(namespace, true)
        return SocketPacketCodec.encode(SocketPacket(
            type: .connect, namespace: namespace, data: .object([("sid", .string(sid)), ("pid", .string(pid))])
        ))
    }

    public func isConnected(to namespace: String) -> Bool {
        namespace == "/" ? rootConnected : otherConnected.contains(namespace)
    }

    /// Whether any namespace is connected.
    public var hasConnections: Bool { rootConnected || !otherConnected.isEmpty }

    /// Sets a namespace's state; returns whether it changed.
    @discardableResult
    private mutating func setConnected(_ namespace: String, _ connected: Bool) -> Bool {
        if namespace == "/" {
            defer { rootConnected = connected }
            return rootConnected != connected
        }
        return connected ? otherConnected.insert(namespace).inserted : otherConnected.remove(namespace) != nil
    }

    public static func connectError(namespace: String, message: String, data: JSONValue? = nil) -> String {
        var members: [(String, JSONValue)] = [("message", .string(message))]
        if let data { members.append(("data", data)) }
        return SocketPacketCodec.encode(SocketPacket(type: .connectError, namespace: namespace, data: .object(members)))
    }
}
