import CSystemd
#if canImport(Glibc)
import Glibc
#endif

/// sd_notify(3) through libsystemd: readiness, status, watchdog and stopping. Without
/// `NOTIFY_SOCKET` (not started by systemd) every call is a silent no-op, as libsystemd does.
public enum SystemdNotifier {
    public static func ready() { notify("READY=1") }
    public static func stopping() { notify("STOPPING=1") }
    public static func watchdog() { notify("WATCHDOG=1") }
    public static func status(_ text: String) { notify("STATUS=\(text)") }
    /// Before a reload: systemd (`Type=notify-reload`, and `systemctl reload` with
    /// `ExecReload=`) waits for the READY=1 sent after it. MONOTONIC_USEC tells systemd
    /// which reload this is, so a READY=1 left over from an earlier one is not taken for it.
    public static func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let microseconds = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
        notify("RELOADING=1\nMONOTONIC_USEC=\(microseconds)")
    }

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
