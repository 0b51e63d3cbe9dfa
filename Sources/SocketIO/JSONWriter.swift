/// Serializes JSON exactly as JavaScript's `JSON.stringify` does (no spaces; only `"`, `\` and
/// control characters escaped; non-ASCII written as UTF-8), so our frames match the original
/// Node server byte for byte.
public enum JSONWriter {
    public static func string(_ value: JSONValue) -> String {
        var out = ""
        write(value, into: &out)
        return out
    }

    public static func write(_ value: JSONValue, into out: inout String) {
        switch value {
        case .null: out += "null"
        case .bool(let flag): out += flag ? "true" : "false"
        case .number(let number): out += formatNumber(number)
        case .string(let text): writeString(text, into: &out)
        case .array(let elements):
            out += "["
            for (position, element) in elements.enumerated() {
                if position > 0 { out += "," }
                write(element, into: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (position, member) in members.enumerated() {
                if position > 0 { out += "," }
                writeString(member.0, into: &out)
                out += ":"
                write(member.1, into: &out)
            }
            out += "}"
        case .binary:
            // Binary never reaches JSON text: encoders replace it with placeholders first.
            out += "null"
        }
    }

    /// JavaScript's Number::toString: integral values print without a fraction, plain decimals
    /// from 1e-7 up to 1e21, exponent form (`1e-7`, `1e+21`) outside; non-finite values become null.
    public static func formatNumber(_ number: Double) -> String {
        guard number.isFinite else { return "null" }
        if number == number.rounded(), abs(number) < 9_007_199_254_740_992 {
            return String(Int64(number)) // exact, and -0 prints as 0
        }
        // Swift's description holds the same shortest round-trip digits as JavaScript; only the
        // layout differs (`1e-05`, `1e+20`, `100.0`), so take its digits and lay them out as JS does.
        let text = abs(number).description
        let parts = text.split(separator: "e", maxSplits: 1)
        let mantissa = parts[0]
        var exponent = parts.count > 1 ? Int(parts[1])! : 0
        let point = mantissa.firstIndex(of: ".") ?? mantissa.endIndex
        exponent += mantissa.distance(from: mantissa.startIndex, to: point)
        var digits = Array(mantissa.filter { $0 != "." })
        while digits.first == "0" { digits.removeFirst(); exponent -= 1 }
        while digits.last == "0" { digits.removeLast() }
        // Now value = 0.digits × 10^exponent, i.e. ECMAScript's s × 10^(n−k) with n = exponent.
        let k = digits.count, n = exponent
        var out = number < 0 ? "-" : ""
        if k <= n && n <= 21 {
            out += String(digits) + String(repeating: "0", count: n - k)
        } else if 0 < n && n <= 21 {
            out += String(digits[..<n]) + "." + String(digits[n...])
        } else if -6 < n && n <= 0 {
            out += "0." + String(repeating: "0", count: -n) + String(digits)
        } else {
            let e = n - 1
            out += String(digits[0]) + (k > 1 ? "." + String(digits[1...]) : "")
            out += "e" + (e < 0 ? "-" : "+") + String(abs(e))
        }
        return out
    }

    /// Walks the UTF-8 bytes: every byte that needs escaping is ASCII, and no byte of a
    /// multi-byte sequence is below 0x80, so the runs between them are copied whole (a scalar-by-
    /// scalar append was the costliest step of building a broadcast).
    public static func writeString(_ text: String, into out: inout String) {
        out += "\""
        let bytes = text.utf8
        var plainStart = bytes.startIndex
        var position = plainStart
        while position != bytes.endIndex {
            let byte = bytes[position]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else {
                position = bytes.index(after: position)
                continue
            }
            out += text[plainStart..<position]
            switch byte {
            case UInt8(ascii: "\""): out += "\\\""
            case UInt8(ascii: "\\"): out += "\\\\"
            case 0x08: out += "\\b"
            case 0x0C: out += "\\f"
            case UInt8(ascii: "\n"): out += "\\n"
            case UInt8(ascii: "\r"): out += "\\r"
            case UInt8(ascii: "\t"): out += "\\t"
            default:
                let hex = String(byte, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            }
            position = bytes.index(after: position)
            plainStart = position
        }
        out += text[plainStart..<position]
        out += "\""
    }
}
