/// The per-client limits of the chat protocol (cluster.conf `[limits]`).
public struct ChatLimits: Sendable, Equatable {
    public var usernameMax: Int
    public var textMax: Int
    public var roomIDMax: Int
    public var sayRate: Int
    public var sayBurst: Int

    public init(usernameMax: Int = 64, textMax: Int = 4096, roomIDMax: Int = 128, sayRate: Int = 20, sayBurst: Int = 40) {
        self.usernameMax = usernameMax
        self.textMax = textMax
        self.roomIDMax = roomIDMax
        self.sayRate = sayRate
        self.sayBurst = sayBurst
    }

    /// Room ids: 1…roomIDMax printable characters (no control characters).
    public func validateRoomID(_ roomID: String?) -> ChatError? {
        guard let roomID, !roomID.isEmpty else {
            return ChatError(.invalidRoomID, "roomid is required: connect with ?roomid=<room>")
        }
        let count = roomID.unicodeScalars.count
        guard count <= roomIDMax else {
            return ChatError(.invalidRoomID, "roomid must be at most \(roomIDMax) characters")
        }
        guard roomID.unicodeScalars.allSatisfy(Self.isPrintable) else {
            return ChatError(.invalidRoomID, "roomid must contain printable characters only")
        }
        return nil
    }

    public func validateUsername(_ username: String?) -> ChatError? {
        guard let username else {
            return ChatError(.invalidUsername, "join needs {username: <string>}")
        }
        let count = username.unicodeScalars.count
        guard count >= 1, count <= usernameMax else {
            return ChatError(.invalidUsername, "username must be 1 to \(usernameMax) characters")
        }
        // Invisible-only names (spaces, zero-width and other format characters) read as blank.
        guard username.unicodeScalars.allSatisfy(Self.isPrintable),
              !username.unicodeScalars.allSatisfy({ $0.properties.isWhitespace || $0.properties.generalCategory == .format }) else {
            return ChatError(.invalidUsername, "username must be printable and not blank")
        }
        return nil
    }

    public func validateText(_ text: String?) -> ChatError? {
        guard let text else {
            return ChatError(.invalidText, "say needs {text: <string>}")
        }
        guard text.unicodeScalars.count <= textMax else {
            return ChatError(.textTooLong, "text must be at most \(textMax) characters")
        }
        return nil
    }

    static func isPrintable(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0..<0x20, 0x7F..<0xA0: return false
        default: return true
        }
    }
}
