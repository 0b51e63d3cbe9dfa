// libsystemd's daemon API (sd_notify, sd_listen_fds_with_names, sd_watchdog_enabled), from
// Debian's libsystemd-dev.
#include <systemd/sd-daemon.h>
