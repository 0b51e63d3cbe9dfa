import CSystemd

/// sd_notify(3) through libsystemd: readiness, status, watchdog and stopping. Without
/// `NOTIFY_SOCKET` (not started by systemd) every call is a silent no-op, as libsystemd does.
public enum SystemdNotifier {
    public static func ready() { notify("READY=1") }
    public static func stopping() { notify("STOPPING=1") }
    public static func watchdog() { notify("WATCHDOG=1") }
    public static func status(_ text: String) { notify("STATUS=\(text)") }

    public static func notify(_ state: String) {
        _ = sd_notify(0, state)
    }

    /// The watchdog interval systemd expects pings within, or nil if no watchdog is set.
    public static func watchdogInterval() -> UInt64? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return microseconds
    }
}
