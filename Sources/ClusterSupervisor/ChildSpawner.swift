#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Starts child processes with posix_spawn (no fork of a multi-threaded process).
///
/// The child gets a clean signal state: the supervisor ignores SIGTERM/SIGINT/SIGHUP (it
/// handles them through dispatch sources) and its threads block signals, and both would
/// otherwise be inherited across exec. File descriptors above stderr are closed in the
/// child, so no socket or pipe of the supervisor leaks into it.
public struct ChildSpawner: Sendable {
    /// The program to run; `/proc/self/exe` is this very binary.
    public var executable: String
    /// argv[0] as `ps` shows it.
    public var argv0: String
    /// Signals whose disposition is reset to the default in the child.
    public var defaultSignals: Set<Int32> = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2]

    public init(executable: String, argv0: String) {
        self.executable = executable
        self.argv0 = argv0
    }

    /// This binary, shown under its real path.
    public static func currentExecutable() -> ChildSpawner {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let path = n > 0 ? String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
        return ChildSpawner(executable: "/proc/self/exe", argv0: path)
    }

    /// Variables that address this process as a systemd service; a node started by the
    /// supervisor must not answer systemd in its place, nor take its sockets.
    static let serviceVariables: Set<String> = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"]

    /// This process's environment without `serviceVariables`, as `NAME=value` strings.
    static func childEnvironment() -> [String] {
        var result: [String] = []
        var cursor = environ
        while let entry = cursor.pointee {
            let text = String(cString: entry)
            let name = String(text.prefix { $0 != "=" })
            if !serviceVariables.contains(name) { result.append(text) }
            cursor += 1
        }
        return result
    }

    /// Spawns `argv0 arguments...` with this process's environment (less the systemd service
    /// variables), stdin/stdout/stderr.
    /// - Returns: the child's pid.
    public func spawn(arguments: [String]) throws(SpawnError) -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for number in defaultSignals { sigaddset(&defaults, number) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let closeFrom = Self.addCloseFrom {
            _ = closeFrom(&actions, 3)
        }

        let argv = [argv0] + arguments
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cArgs.append(nil)
        defer { for p in cArgs { free(p) } }
        var cEnvironment: [UnsafeMutablePointer<CChar>?] = Self.childEnvironment().map { strdup($0) }
        cEnvironment.append(nil)
        defer { for p in cEnvironment { free(p) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, cArgs, cEnvironment)
        guard result == 0 else { throw SpawnError(executable: executable, code: result) }
        return pid
    }

    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// glibc 2.34+ has posix_spawn_file_actions_addclosefrom_np, but the Glibc module does
    /// not export GNU extensions; without it we rely on every descriptor being O_CLOEXEC,
    /// as NIO and dispatch create them.
    private static let addCloseFrom: CloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: CloseFrom.self)
    }()
}

public struct SpawnError: Error, Sendable, CustomStringConvertible {
    public var executable: String
    public var code: Int32
    public var description: String {
        let text = strerror(code).map { String(cString: $0) } ?? "error \(code)"
        return "cannot start \(executable): \(text)"
    }
}
