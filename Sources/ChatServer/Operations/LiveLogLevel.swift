import Logging
import Synchronization

/// The level a node's log handlers log at, which a reload may change (`[cluster] log_level`).
///
/// swift-log's `Logger` is a value: every copy (the node's, each session's, the fanout's) holds
/// its own handler, so no one place can set their level. Instead each handler made by
/// `handler(label:base:)` asks this shared object for the level whenever a `Logger` checks it,
/// which is on every log call: an atomic load, no lock.
public final class LiveLogLevel: Sendable {
    /// `--log-level`: what applies while cluster.conf sets no `log_level`.
    public let flagLevel: Logger.Level
    private let current: Atomic<UInt8>

    public init(flag: Logger.Level) {
        self.flagLevel = flag
        self.current = Atomic(Self.code(of: flag))
    }

    public var level: Logger.Level { Self.level(of: current.load(ordering: .relaxed)) }

    /// Applies `[cluster] log_level` (a name of `ClusterConfig.logLevels`); nil, or a name this
    /// build does not know, hands the level back to the flag. Returns the level now in force.
    @discardableResult
    public func apply(configured name: String?) -> Logger.Level {
        let level = name.flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? flagLevel
        current.store(Self.code(of: level), ordering: .relaxed)
        return level
    }

    /// A handler for `LoggingSystem.bootstrap` that writes through `base` at the live level.
    public func handler(base: any LogHandler) -> any LogHandler {
        LiveLevelLogHandler(base: base, level: self)
    }

    private static func code(of level: Logger.Level) -> UInt8 {
        UInt8(Logger.Level.allCases.firstIndex(of: level) ?? 0)
    }

    private static func level(of code: UInt8) -> Logger.Level {
        let all = Logger.Level.allCases
        return Int(code) < all.count ? all[Int(code)] : .info
    }
}

/// Wraps a handler (stderr) so that its level is `LiveLogLevel`'s, unless code set a level
/// on this one logger (swift-log's rule: a level set on one `Logger` is that logger's alone).
struct LiveLevelLogHandler: LogHandler {
    var base: any LogHandler
    let level: LiveLogLevel
    /// Set through `logLevel` on this handler's logger; nil follows the live level.
    private var override: Logger.Level?

    init(base: any LogHandler, level: LiveLogLevel) {
        self.base = base
        self.level = level
    }

    var logLevel: Logger.Level {
        get { override ?? level.level }
        set { override = newValue }
    }

    var metadata: Logger.Metadata {
        get { base.metadata }
        set { base.metadata = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { base.metadataProvider }
        set { base.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        base.log(event: event)
    }
}
