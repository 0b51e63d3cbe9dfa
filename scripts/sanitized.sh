#!/usr/bin/env bash
# Usage: scripts/sanitized.sh address|thread COMMAND [ARG...]
# Runs COMMAND (`swift build`, `swift test`, pytest, ...) for a sanitizer build of our targets
# (Package.swift: CHATMESH_SANITIZE) and fails if COMMAND fails or if any process under it
# (a test runner, a chatmesh node, `chatmesh cluster` and its children) wrote a sanitizer
# report, printing every report. Reports go to files because a node's stderr is only shown
# when its test fails, and a data race need not fail the test that hit it.
#   - SWIFT_BACKTRACE=enable=no: the sanitizer's own crash report, not Swift's backtracer.
#   - detect_leaks=0 for the test runner (the nodes have it compiled in, Sources/CSanitizerDefaults):
#     LeakSanitizer reports what the tests leave alive at exit (EmbeddedChannels never closed,
#     XCTest's own objects), not leaks that grow.
set -uo pipefail

mode=${1:?address or thread}
shift
case $mode in
    address) var=ASAN_OPTIONS; options="detect_leaks=0" ;;
    thread) var=TSAN_OPTIONS; options="" ;;
    *) echo "sanitized.sh: address or thread, not '$mode'" >&2; exit 2 ;;
esac
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# One folder per run: `make test` runs several of these at once.
logs="$repo/.build/sanitizer-logs/$mode.$$"
rm -rf "$logs" && mkdir -p "$logs"

export CHATMESH_SANITIZE=$mode SWIFT_BACKTRACE=enable=no
export "$var=${options:+$options:}log_path=$logs/report${!var:+:${!var}}"
"$@"
status=$?

reports=("$logs"/*)
if [[ -e ${reports[0]} ]]; then
    for report in "${reports[@]}"; do
        echo "==== $mode sanitizer report: $report ====" >&2
        cat "$report" >&2
    done
    echo "sanitized.sh: ${#reports[@]} $mode sanitizer report(s) from: $* (kept in $logs)" >&2
    exit 1
fi
rmdir "$logs"
exit $status
