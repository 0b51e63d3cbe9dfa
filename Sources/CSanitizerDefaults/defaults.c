// Default options of the sanitizer runtimes, linked into chatmesh only by a CHATMESH_SANITIZE
// build (Package.swift). They live in the binary because not every way a test starts a node
// passes the environment on (systemd-socket-activate forwards only the variables it is told
// to); ASAN_OPTIONS / TSAN_OPTIONS still override them. C, not Swift: the runtime calls these
// during its own start, before main, when instrumented code must not run yet (this target is
// compiled without -fsanitize).

// No LeakSanitizer: at exit it reports the process-lifetime objects (the event loop group,
// RoomHub, metrics, the fanout) that become unreachable once the loops stop, and exits 23, so
// every clean stop would fail; none of those reports grows with connections or messages.
const char *__asan_default_options(void) { return "detect_leaks=0"; }

// The first data race ends the process (exit 66), so the test that caused it fails.
const char *__tsan_default_options(void) { return "halt_on_error=1"; }
