#!/usr/bin/env bash
# Usage: scripts/test-summary.sh [STEP...]
# Printed last by `make test`: one line per step (how it ended, when it started and how long
# it took, counted from the first step), then, for each step that failed, the lines that say
# what failed (pytest's FAILED/ERROR lines, Swift Testing's and XCTest's failures, sanitizer
# reports, make errors), so the end of CI's output names the failure. Exits 1 if any failed.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
logs="$repo/.build/test-logs"
shopt -s nullglob
results=("$logs"/*.result)
if [ ${#results[@]} -eq 0 ]; then
    echo "test summary: no step recorded a result"
    exit 1
fi
first=$(cat "${results[@]}" | awk 'NR == 1 || $2 < m { m = $2 } END { print m }')
failed=()
echo "==== make test: steps (start and length in seconds) ===="
for result in $(for r in "${results[@]}"; do echo "$(awk '{ print $2 }' "$r") $r"; done | sort -n | awk '{ print $2 }'); do
    name=$(basename "$result" .result)
    read -r status start end < "$result"
    verdict=ok
    if [ "$status" != 0 ]; then verdict="FAILED (exit $status)"; failed+=("$name"); fi
    printf '  %-28s +%4d s  %4d s  %s\n' "$name" $((start - first)) $((end - start)) "$verdict"
done
# Steps that started but never recorded an end (killed with make) count as failed.
for log in "$logs"/*.log; do
    name=$(basename "$log" .log)
    if [ ! -e "$logs/$name.result" ]; then
        printf '  %-28s did not finish\n' "$name"
        failed+=("$name")
    fi
done
# Steps named on the command line that never started: `make -k` skips a step that waits for
# one that failed (the Redis Cluster suites wait for the other ASan suites).
notrun=0
for name in "$@"; do
    if [ ! -e "$logs/$name.log" ]; then
        printf '  %-28s not run (a step it waits for failed)\n' "$name"
        notrun=1
    fi
done
for name in "${failed[@]}"; do
    echo "==== what failed in $name (whole output: .build/test-logs/$name.log) ===="
    grep -E '^(FAILED|ERROR) |^E +[A-Za-z]*(Error|assert)|✘|error: |: error:|sanitizer report|WARNING: ThreadSanitizer|ERROR: AddressSanitizer|^[0-9]+ (failed|passed)|[0-9]+ failed' \
        "$logs/$name.log" | grep -v '^E +$' | head -25
    echo "  last lines:"
    tail -n 6 "$logs/$name.log" | sed 's/^/  | /'
done
[ ${#failed[@]} -eq 0 ] && [ $notrun -eq 0 ]
