import ChatCore
import NIOCore

/// One frame of the node-to-node protocol. On the wire: `u32 length | u8 type | body`,
/// big-endian, where `length` counts the type byte and the body. Strings are `u16 length +
/// UTF-8`. A PUB's payload is the rest of the frame, so framing costs 15 bytes + the room name.
public enum MeshFrame: Equatable, Sendable {
    /// First frame each side sends: protocol version, node name, process epoch, a fresh nonce.
    case hello(MeshHello)
    /// Proof of the shared secret over both HELLOs, plus what we received from the peer so far
    /// (the peer's epoch and last sequence), so it can resend exactly what we miss.
    case auth(MeshAuth)
    /// The full set of rooms with local members; replaces the receiver's table for the sender.
    case snapshot([String])
    case sub(String)
    case unsub(String)
    /// A message for `room`: the Socket.IO packet as encoded at its origin (the sender),
    /// numbered per link direction and sender epoch.
    case pub(sequence: UInt64, room: String, payload: ByteBuffer)
    /// Everything up to `sequence` arrived; the sender may forget it.
    case ack(UInt64)
    case ping(UInt64)
    case pong(UInt64)
    /// Why the sender closes the link, sent just before closing.
    case goodbye(String)
    /// A PUB with recovery on (docs/RECOVERY.md): numbered on the link like a PUB (`sequence`),
    /// and by its origin, the sender's process, per room (`originSequence`: 1, 2, 3 …), so
    /// every node names the message the same way in the offsets it gives clients.
    case pubStamped(sequence: UInt64, originSequence: UInt64, room: String, payload: ByteBuffer)
    /// A recoverable session's record (recovery on): sent to every peer when it changes and,
    /// all of them, when a link comes up. See `MeshFrameCodec` for its fields.
    case session(SessionRecord)
    /// A client's request for a session the receiver owns, relayed by the sender (docs/RELAY.md):
    /// a polling GET or POST, or a WebSocket that opens a relayed stream. `id` is chosen by the
    /// relay (see `MeshRelayFrameCodec` for the fields and their bounds).
    case relayRequest(id: UInt64, request: RelayedRequest)
    /// The owner's answer to the GET or POST `id`.
    case relayReply(id: UInt64, reply: RelayReply)
    /// One frame of the relayed stream `id`, either way (text/binary to the owner, framed back).
    case relayFrame(id: UInt64, kind: RelayFrameKind, payload: ByteBuffer)
    /// Either side ends the stream `id`, or the relay cancels the request `id`.
    case relayClose(id: UInt64, code: UInt16)

    public enum FrameType: UInt8, Sendable, CaseIterable {
        case hello = 1, auth, snapshot, sub, unsub, pub, ack, ping, pong, goodbye, pubStamped, session
        case relayRequest, relayReply, relayFrame, relayClose
    }

    public var type: FrameType {
        switch self {
        case .hello: return .hello
        case .auth: return .auth
        case .snapshot: return .snapshot
        case .sub: return .sub
        case .unsub: return .unsub
        case .pub: return .pub
        case .ack: return .ack
        case .ping: return .ping
        case .pong: return .pong
        case .goodbye: return .goodbye
        case .pubStamped: return .pubStamped
        case .session: return .session
        case .relayRequest: return .relayRequest
        case .relayReply: return .relayReply
        case .relayFrame: return .relayFrame
        case .relayClose: return .relayClose
        }
    }
}

public struct MeshHello: Equatable, Sendable {
    public static let protocolVersion: UInt8 = 1
    public static let nonceLength = 32

    public var version: UInt8
    public var node: String
    public var epoch: UInt64
    public var nonce: [UInt8]

    public init(version: UInt8 = MeshHello.protocolVersion, node: String, epoch: UInt64, nonce: [UInt8]) {
        self.version = version
        self.node = node
        self.epoch = epoch
        self.nonce = nonce
    }
}

public struct MeshAuth: Equatable, Sendable {
    public static let proofLength = 32

    public var proof: [UInt8]
    /// The epoch of the peer's process that we last received PUBs from (0: none yet).
    public var resumeEpoch: UInt64
    /// The last PUB sequence we received from that epoch.
    public var resumeSequence: UInt64

    public init(proof: [UInt8], resumeEpoch: UInt64, resumeSequence: UInt64) {
        self.proof = proof
        self.resumeEpoch = resumeEpoch
        self.resumeSequence = resumeSequence
    }
}

/// Why a frame was rejected. Any of these closes the link with the reason logged.
public enum MeshFrameError: Error, Equatable, Sendable, CustomStringConvertible {
    case frameTooLarge(length: Int, limit: Int)
    case emptyFrame
    case unknownType(UInt8)
    case truncated(MeshFrame.FrameType)
    case trailingBytes(MeshFrame.FrameType)
    case invalidUTF8(MeshFrame.FrameType)
    case invalidField(String)

    public var description: String {
        switch self {
        case .frameTooLarge(let length, let limit): return "frame of \(length) bytes exceeds the limit of \(limit)"
        case .emptyFrame: return "frame without a type byte"
        case .unknownType(let type): return "unknown frame type \(type)"
        case .truncated(let type): return "\(type) frame is truncated"
        case .trailingBytes(let type): return "\(type) frame has trailing bytes"
        case .invalidUTF8(let type): return "\(type) frame holds a string that is not UTF-8"
        case .invalidField(let what): return what
        }
    }
}
