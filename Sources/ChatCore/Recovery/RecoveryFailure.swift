/// Why a CONNECT with a `pid` got a new session instead of its old one; each is counted.
public enum RecoveryFailure: String, Sendable, CaseIterable {
    case unknownPid = "unknown_pid"
    case expired
    case ended
    case wrongRoom = "wrong_room"
    case badOffset = "bad_offset"
    case offsetTooOld = "offset_too_old"
    case historyIncomplete = "history_incomplete"
    case badAuth = "bad_auth"
}
