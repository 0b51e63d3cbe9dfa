/// The text of every `say` the bench sends: `s<sender>:<seq>:<sent ns>:` padded with `x` to the
/// payload size, e.g. `s12:000123:123456789012:xxxxx`. `s` marks a say sent inside the measured
/// window, `w` one sent during warmup (only its sender looks at it, to keep its window moving).
///
/// Receivers find `"text":"` in the frame and parse just this prefix: no JSON parsing per frame.
public struct SayStamp: Equatable, Sendable {
    public var measured: Bool
    public var sender: Int
    public var sequence: UInt64
    public var sentNanos: UInt64

    public init(measured: Bool, sender: Int, sequence: UInt64, sentNanos: UInt64) {
        self.measured = measured
        self.sender = sender
        self.sequence = sequence
        self.sentNanos = sentNanos
    }
}

public enum SayText {
    /// Writes the text (no JSON quoting needed: only ASCII letters, digits and `:`) into `out`.
    /// The text is at least `payload` bytes; longer only when the stamp itself is longer.
    public static func encode(_ stamp: SayStamp, payload: Int, into out: inout [UInt8]) {
        let start = out.count
        out.append(stamp.measured ? UInt8(ascii: "s") : UInt8(ascii: "w"))
        appendDecimal(UInt64(stamp.sender), minDigits: 1, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDecimal(stamp.sequence, minDigits: 6, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDecimal(stamp.sentNanos, minDigits: 1, to: &out)
        out.append(UInt8(ascii: ":"))
        let written = out.count - start
        if written < payload {
            out.append(contentsOf: repeatElement(UInt8(ascii: "x"), count: payload - written))
        }
    }

    public static func encode(_ stamp: SayStamp, payload: Int) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(max(payload, 48))
        encode(stamp, payload: payload, into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Parses the stamp at the start of `text` (the bytes after `"text":"`). Nil if it is not one.

    public static func parse(_ text: UnsafeRawBufferPointer) -> SayStamp? {
        var i = 0
        let n = text.count
        guard n >= 4 else { return nil }
        let kind = text[0]
        guard kind == UInt8(ascii: "s") || kind == UInt8(ascii: "w") else { return nil }
        i = 1
        guard let sender = readNumber(text, &i), sender <= UInt64(Int32.max),
              let sequence = readNumber(text, &i),
              let sent = readNumber(text, &i) else { return nil }
        return SayStamp(measured: kind == UInt8(ascii: "s"), sender: Int(sender), sequence: sequence, sentNanos: sent)
    }

    public static func parse(_ text: String) -> SayStamp? {
        var copy = Array(text.utf8)
        return copy.withUnsafeMutableBytes { parse(UnsafeRawBufferPointer($0)) }
    }

    /// Decimal digits up to a `:` (consumed). Nil on no digits, a missing `:`, or overflow.

    static func readNumber(_ text: UnsafeRawBufferPointer, _ i: inout Int) -> UInt64? {
        var value: UInt64 = 0
        let start = i
        while i < text.count {
            let c = text[i]
            if c == UInt8(ascii: ":") {
                guard i > start else { return nil }
                i += 1
                return value
            }
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9"), i - start < 19 else { return nil }
            value = value &* 10 &+ UInt64(c &- UInt8(ascii: "0"))
            i += 1
        }
        return nil
    }

    static func appendDecimal(_ value: UInt64, minDigits: Int, to out: inout [UInt8]) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        var v = value
        withUnsafeMutableBytes(of: &digits) { buf in
            repeat {
                buf[count] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                count += 1
            } while v > 0
            while count < minDigits && count < 20 {
                buf[count] = UInt8(ascii: "0")
                count += 1
            }
            for k in stride(from: count - 1, through: 0, by: -1) { out.append(buf[k]) }
        }
    }
}
