import ChatCore
import NIOCore

/// The body of a SESSION frame (type 12), one `SessionRecord`:
///
///     string pid | string sid | string room | u8 has-username (0, 1) [| string username]
///     | string owner | u64 owner epoch | u64 version | u8 state (0 live, 1 held, 2 ended)
///     | i64 ms since 1970 (0 when live) | string start offset
///
/// pid and sid are 1 to 64 bytes (the server makes them 20); the start offset is the canonical
/// text of a `RecoveryOffset` (at most 400 characters). Like every other field check, a value
/// outside these bounds closes the link: only a broken or hostile peer sends one, and a record
/// read half-right could hand a session to the wrong client.
extension MeshFrameCodec {
    public static let maxSessionIDLength = 64

    enum SessionStateTag: UInt8 {
        case live = 0, held, ended
    }

    /// Whether `record` fits the SESSION frame's bounds. A record that does not (a start vector
    /// past 32 origins or 400 characters) is not sent: the peer would have to close the link.
    public static func canEncode(_ record: SessionRecord) -> Bool {
        (1...maxSessionIDLength).contains(record.pid.utf8.count)
            && (1...maxSessionIDLength).contains(record.sid.utf8.count)
            && record.room.utf8.count <= maxStringLength
            && (record.username?.utf8.count ?? 0) <= maxStringLength
            && record.owner.utf8.count <= maxStringLength
            && record.start.sequences.count <= RecoveryOffset.maxEntries
            && record.start.string.utf8.count <= RecoveryOffset.maxLength
    }

    static func writeSession(_ record: SessionRecord, into buffer: inout ByteBuffer) {
        writeString(record.pid, into: &buffer)
        writeString(record.sid, into: &buffer)
        writeString(record.room, into: &buffer)
        if let username = record.username {
            buffer.writeInteger(UInt8(1))
            writeString(username, into: &buffer)
        } else {
            buffer.writeInteger(UInt8(0))
        }
        writeString(record.owner, into: &buffer)
        buffer.writeInteger(record.ownerEpoch)
        buffer.writeInteger(record.version)
        switch record.state {
        case .live:
            buffer.writeInteger(SessionStateTag.live.rawValue)
            buffer.writeInteger(Int64(0))
        case .held(let since):
            buffer.writeInteger(SessionStateTag.held.rawValue)
            buffer.writeInteger(since)
        case .ended(let at):
            buffer.writeInteger(SessionStateTag.ended.rawValue)
            buffer.writeInteger(at)
        }
        writeString(record.start.string, into: &buffer)
    }

    static func readSession(_ body: inout ByteBuffer) throws(MeshFrameError) -> SessionRecord {
        let pid = try readSessionID(&body, "pid")
        let sid = try readSessionID(&body, "sid")
        let room = try readString(&body, .session)
        guard let hasUsername: UInt8 = body.readInteger() else { throw .truncated(.session) }
        let username: String?
        switch hasUsername {
        case 0: username = nil
        case 1: username = try readString(&body, .session)
        default: throw .invalidField("session frame: username flag \(hasUsername) (0 or 1)")
        }
        let owner = try readString(&body, .session)
        guard let ownerEpoch: UInt64 = body.readInteger(),
              let version: UInt64 = body.readInteger(),
              let rawState: UInt8 = body.readInteger(),
              let millis: Int64 = body.readInteger() else { throw .truncated(.session) }
        let state: SessionRecord.State
        switch SessionStateTag(rawValue: rawState) {
        case .live:
            // One spelling per record: a live session has no time.
            guard millis == 0 else { throw .invalidField("session frame: live state with time \(millis)") }
            state = .live
        case .held: state = .held(sinceMillis: millis)
        case .ended: state = .ended(atMillis: millis)
        case nil: throw .invalidField("session frame: state \(rawState) (0 live, 1 held, 2 ended)")
        }
        let startText = try readString(&body, .session)
        guard startText.utf8.count <= RecoveryOffset.maxLength else {
            throw .invalidField("session frame: start offset of \(startText.utf8.count) bytes (at most \(RecoveryOffset.maxLength))")
        }
        // Only the canonical text (as `RecoveryOffset.string` writes it) is accepted, so a
        // record has one spelling on the wire.
        guard let start = RecoveryOffset(parsing: startText), start.string == startText else {
            throw .invalidField("session frame: malformed start offset")
        }
        return SessionRecord(pid: pid, sid: sid, room: room, username: username, owner: owner, ownerEpoch: ownerEpoch,
                             version: version, state: state, start: start)
    }

    private static func readSessionID(_ body: inout ByteBuffer, _ name: String) throws(MeshFrameError) -> String {
        let text = try readString(&body, .session)
        guard (1...maxSessionIDLength).contains(text.utf8.count) else {
            throw .invalidField("session frame: \(name) of \(text.utf8.count) bytes (1 to \(maxSessionIDLength))")
        }
        return text
    }
}
