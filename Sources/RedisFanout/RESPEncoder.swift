import NIOCore

/// Writes Redis commands as RESP arrays of bulk strings, the form every Redis accepts.
public enum RESPEncoder {
    public static func writeCommand(_ parts: [RESPArgument], into buffer: inout ByteBuffer) {
        buffer.writeString("*\(parts.count)\r\n")
        for part in parts {
            switch part {
            case .string(let text):
                buffer.writeString("$\(text.utf8.count)\r\n")
                buffer.writeString(text)
            case .bytes(let bytes):
                buffer.writeString("$\(bytes.readableBytes)\r\n")
                buffer.writeImmutableBuffer(bytes)
            }
            buffer.writeStaticString("\r\n")
        }
    }

    public static func command(_ parts: [RESPArgument]) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        writeCommand(parts, into: &buffer)
        return buffer
    }

    /// Writes a RESP value (used by tests and by fake servers).
    public static func writeValue(_ value: RESPValue, into buffer: inout ByteBuffer) {
        switch value {
        case .simpleString(let text): buffer.writeString("+\(text)\r\n")
        case .error(let text): buffer.writeString("-\(text)\r\n")
        case .integer(let number): buffer.writeString(":\(number)\r\n")
        case .bulkString(nil): buffer.writeStaticString("$-1\r\n")
        case .bulkString(let bytes?):
            buffer.writeString("$\(bytes.readableBytes)\r\n")
            buffer.writeImmutableBuffer(bytes)
            buffer.writeStaticString("\r\n")
        case .array(nil): buffer.writeStaticString("*-1\r\n")
        case .array(let elements?):
            buffer.writeString("*\(elements.count)\r\n")
            for element in elements { writeValue(element, into: &buffer) }
        }
    }
}

public enum RESPArgument: Sendable, ExpressibleByStringLiteral {
    case string(String)
    case bytes(ByteBuffer)

    public init(stringLiteral value: String) {
        self = .string(value)
    }
}
