import NIOCore

/// The answer to a recovery attempt.
public enum RecoveryOutcome: Sendable {
    /// The session, now live here; the broadcasts the client missed (Engine.IO frames, each
    /// with its offset), in order; and when that history was read: the restored member joins
    /// its room with that time, so no broadcast stamped after it passes the member by.
    case recovered(SessionRecord, missed: [ByteBuffer], snapshotAt: NIODeadline)
    case failed(RecoveryFailure)
}
