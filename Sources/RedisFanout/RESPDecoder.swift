import NIOCore

/// Incremental RESP2 decoding with limits: a value is taken from the buffer only once it is
/// complete, so replies may arrive split at any byte. Anything malformed or beyond the limits
/// is an error, never a crash or an unbounded allocation.
public struct RESPDecoder: Sendable {
    public var maxBulkLength: Int
    public var maxArrayCount: Int
    public var maxLineLength: Int
    public var maxDepth: Int

    public init(maxBulkLength: Int = 64 * 1024 * 1024, maxArrayCount: Int = 1_000_000, maxLineLength: Int = 64 * 1024, maxDepth: Int = 8) {
        self.maxBulkLength = maxBulkLength
        self.maxArrayCount = maxArrayCount
        self.maxLineLength = maxLineLength
        self.maxDepth = maxDepth
    }

    /// Returns the next complete value and consumes it, or nil (consuming nothing) if the buffer
    /// holds only part of one.
    public func next(from buffer: inout ByteBuffer) throws(RESPError) -> RESPValue? {
        var cursor = buffer.readerIndex
        guard let value = try parse(buffer, at: &cursor, depth: 0) else { return nil }
        buffer.moveReaderIndex(to: cursor)
        return value
    }

    private func parse(_ buffer: ByteBuffer, at cursor: inout Int, depth: Int) throws(RESPError) -> RESPValue? {
        guard let type: UInt8 = buffer.getInteger(at: cursor) else { return nil }
        var position = cursor + 1
        guard let line = try readLine(buffer, at: &position) else { return nil }
        let value: RESPValue
        switch type {
        case UInt8(ascii: "+"):
            value = .simpleString(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: "-"):
            value = .error(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: ":"):
            guard let number = Self.integer(line) else { throw .invalidInteger }
            value = .integer(number)
        case UInt8(ascii: "$"):
            guard let length = Self.integer(line), length >= -1 else { throw .invalidLength }
            if length == -1 {
                value = .bulkString(nil)
            } else {
                guard length <= maxBulkLength else { throw .bulkTooLarge(length: Int(length), limit: maxBulkLength) }
                guard buffer.writerIndex - position >= Int(length) + 2 else { return nil }
                let body = buffer.getSlice(at: position, length: Int(length))!
                position += Int(length)
                guard buffer.getInteger(at: position, as: UInt16.self) == 0x0D0A else { throw .missingCRLF }
                position += 2
                value = .bulkString(body)
            }
        case UInt8(ascii: "*"):
            guard let count = Self.integer(line), count >= -1 else { throw .invalidLength }
            if count == -1 {
                value = .array(nil)
            } else {
                guard count <= maxArrayCount else { throw .arrayTooLarge(count: Int(count), limit: maxArrayCount) }
                guard depth < maxDepth else { throw .nestingTooDeep(limit: maxDepth) }
                var elements: [RESPValue] = []
                elements.reserveCapacity(min(Int(count), 1024))
                for _ in 0..<count {
                    guard let element = try parse(buffer, at: &position, depth: depth + 1) else { return nil }
                    elements.append(element)
                }
                value = .array(elements)
            }
        default:
            throw .unknownType(type)
        }
        cursor = position
        return value
    }

    /// The bytes up to CRLF, advancing past it; nil if the CRLF has not arrived yet.
    private func readLine(_ buffer: ByteBuffer, at position: inout Int) throws(RESPError) -> [UInt8]? {
        let available = buffer.writerIndex - position
        let view = buffer.viewBytes(at: position, length: min(available, maxLineLength + 2)) ?? ByteBufferView()
        guard let cr = view.firstIndex(of: 0x0D) else {
            if available > maxLineLength + 1 { throw .lineTooLong(limit: maxLineLength) }
            return nil
        }
        let lineLength = cr - view.startIndex
        guard lineLength <= maxLineLength else { throw .lineTooLong(limit: maxLineLength) }
        guard position + lineLength + 1 < buffer.writerIndex else { return nil }
        guard buffer.getInteger(at: position + lineLength + 1, as: UInt8.self) == 0x0A else { throw .missingCRLF }
        let line = buffer.getBytes(at: position, length: lineLength)!
        position += lineLength + 2
        return line
    }

    static func integer(_ digits: [UInt8]) -> Int64? {
        guard !digits.isEmpty, digits.count <= 20 else { return nil }
        var negative = false
        var index = 0
        if digits[0] == UInt8(ascii: "-") {
            negative = true
            index = 1
            guard digits.count > 1 else { return nil }
        }
        // Accumulated as a negative number, whose range reaches Int64.min.
        var value: Int64 = 0
        while index < digits.count {
            let digit = digits[index]
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
            let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times.subtractingReportingOverflow(Int64(digit - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
            index += 1
        }
        if negative { return value }
        return value == Int64.min ? nil : -value
    }
}
