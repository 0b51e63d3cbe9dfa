import NIOCore

/// A RESP2 value: what a Redis server sends. Bulk strings and arrays may be null.
public enum RESPValue: Equatable, Sendable {
    case simpleString(String)
    case error(String)
    case integer(Int64)
    case bulkString(ByteBuffer?)
    case array([RESPValue]?)

    public var string: String? {
        switch self {
        case .simpleString(let text): return text
        case .bulkString(let buffer?): return String(buffer: buffer)
        default: return nil
        }
    }

    public var bytes: ByteBuffer? {
        if case .bulkString(let buffer?) = self { return buffer }
        return nil
    }
}

/// Why a RESP reply was rejected; the connection that sent it is reset.
public enum RESPError: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownType(UInt8)
    case invalidInteger
    case invalidLength
    case lineTooLong(limit: Int)
    case bulkTooLarge(length: Int, limit: Int)
    case arrayTooLarge(count: Int, limit: Int)
    case nestingTooDeep(limit: Int)
    case missingCRLF

    public var description: String {
        switch self {
        case .unknownType(let byte): return "unknown RESP type byte \(byte)"
        case .invalidInteger: return "invalid RESP integer"
        case .invalidLength: return "invalid RESP length"
        case .lineTooLong(let limit): return "RESP line longer than \(limit) bytes"
        case .bulkTooLarge(let length, let limit): return "RESP bulk string of \(length) bytes exceeds \(limit)"
        case .arrayTooLarge(let count, let limit): return "RESP array of \(count) elements exceeds \(limit)"
        case .nestingTooDeep(let limit): return "RESP arrays nested deeper than \(limit)"
        case .missingCRLF: return "RESP value not terminated by CRLF"
        }
    }
}
