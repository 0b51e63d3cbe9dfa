/// What a client has had of a room: per origin, the last sequence delivered to it. Sent with
/// every broadcast as `<origin>.<seq>-<origin>.<seq>…` (base 36, sorted by origin) and given
/// back at reconnect. The text comes from the client, so parsing is strict and bounded.
public struct RecoveryOffset: Sendable, Equatable {
    /// Longest offset text accepted back from a client.
    public static let maxLength = 400
    /// Most origins an offset may name.
    public static let maxEntries = 32

    public private(set) var sequences: [UInt32: UInt64]

    public init(_ sequences: [UInt32: UInt64] = [:]) {
        self.sequences = sequences.filter { $0.value > 0 }
    }

    /// nil for anything but a well-formed offset: empty pieces, characters outside `0-9a-z`,
    /// numbers that overflow, origin 0, sequence 0, an origin named twice, more than
    /// `maxEntries` entries or more than `maxLength` characters. The empty string is the
    /// empty offset (a client that never got a broadcast).
    public init?(parsing text: String) {
        guard text.utf8.count <= Self.maxLength else { return nil }
        let bytes = Array(text.utf8)
        var sequences: [UInt32: UInt64] = [:]
        guard !bytes.isEmpty else {
            self.sequences = sequences
            return
        }
        for entry in bytes.split(separator: UInt8(ascii: "-"), omittingEmptySubsequences: false) {
            guard sequences.count < Self.maxEntries else { return nil }
            let parts = entry.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
            guard parts.count == 2,
                  let origin = Self.base36(parts[0], max: UInt64(UInt32.max)), origin > 0,
                  let sequence = Self.base36(parts[1], max: UInt64.max), sequence > 0,
                  sequences.updateValue(sequence, forKey: UInt32(origin)) == nil
            else { return nil }
        }
        self.sequences = sequences
    }

    /// The last sequence of `origin` this offset covers; 0 when it names none.
    public subscript(origin: UInt32) -> UInt64 {
        sequences[origin] ?? 0
    }

    /// The canonical text: entries sorted by origin; "" for the empty offset.
    public var string: String {
        Self.format(sequences.sorted { $0.key < $1.key })
    }

    static func format(_ sorted: [(key: UInt32, value: UInt64)]) -> String {
        var text = ""
        text.reserveCapacity(sorted.count * 14)
        for (index, entry) in sorted.enumerated() {
            if index > 0 { text.append("-") }
            text.append(String(entry.key, radix: 36))
            text.append(".")
            text.append(String(entry.value, radix: 36))
        }
        return text
    }

    /// Lowercase base 36, 1 to 13 digits, at most `max`; nil otherwise.
    private static func base36(_ digits: ArraySlice<UInt8>, max: UInt64) -> UInt64? {
        guard !digits.isEmpty, digits.count <= 13 else { return nil }
        var value: UInt64 = 0
        for byte in digits {
            let digit: UInt64
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt64(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): digit = UInt64(byte - UInt8(ascii: "a") + 10)
            default: return nil
            }
            let (times, overflow1) = value.multipliedReportingOverflow(by: 36)
            let (sum, overflow2) = times.addingReportingOverflow(digit)
            guard !overflow1, !overflow2 else { return nil }
            value = sum
        }
        return value <= max ? value : nil
    }
}
