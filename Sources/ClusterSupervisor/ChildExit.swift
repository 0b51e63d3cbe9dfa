#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How a child process ended, decoded from a `waitpid` status (the W* macros are not
/// visible from Swift).
public enum ChildExit: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    /// nil for stop/continue notifications (only reported with WUNTRACED/WCONTINUED).
    public init?(waitStatus status: Int32) {
        let low = status & 0x7F
        if low == 0 {
            self = .exited((status >> 8) & 0xFF)
        } else if low != 0x7F && status != 0xFFFF {
            self = .signaled(low)
        } else {
            return nil
        }
    }

    /// Anything but a clean `exit(0)`: the supervisor restarts these.
    public var isAbnormal: Bool { self != .exited(0) }

    public var description: String {
        switch self {
        case .exited(let code): return "exit status \(code)"
        case .signaled(let number): return "killed by signal \(number)\(ChildExit.signalName(number).map { " (\($0))" } ?? "")"
        }
    }

    static func signalName(_ number: Int32) -> String? {
        switch number {
        case SIGHUP: return "SIGHUP"
        case SIGINT: return "SIGINT"
        case SIGQUIT: return "SIGQUIT"
        case SIGILL: return "SIGILL"
        case SIGTRAP: return "SIGTRAP"
        case SIGABRT: return "SIGABRT"
        case SIGBUS: return "SIGBUS"
        case SIGFPE: return "SIGFPE"
        case SIGKILL: return "SIGKILL"
        case SIGSEGV: return "SIGSEGV"
        case SIGPIPE: return "SIGPIPE"
        case SIGTERM: return "SIGTERM"
        default: return nil
        }
    }
}
