/// A problem in a cluster.conf, located at a line so an operator can jump straight to it.
///
/// `line` is 1-based; 0 means the problem concerns the whole file (it cannot be read,
/// or something required is missing everywhere, such as any `[node NAME]` section).
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var message: String

    public init(file: String, line: Int, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    /// `FILE:LINE: message`, the format compilers use, so editors and terminals link it.
    public var description: String { "\(file):\(line): \(message)" }
}

/// Why a single value (an address, a Redis URL) is invalid, without a location; the
/// config parser wraps it into a `ConfigError` at the value's line. (`Result` needs an
/// `Error` type, so this stands in for a bare String message.)
public struct ConfigValueError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}

extension ConfigValueError: ExpressibleByStringInterpolation {
    public init(stringLiteral value: String) { self.message = value }
}
