#!/usr/bin/env bash
# Usage: scripts/test-stage.sh NAME COMMAND [ARG...]
# Runs one step of `make test` (a build, a unit run, one pytest suite), passing its output
# through, and records how it ended in .build/test-logs/NAME.{log,result} for
# scripts/test-summary.sh. Why: `make test` runs several steps side by side and prints each
# only when it is done, so the step that failed can be pages above the end of CI's output;
# the summary repeats, last, which step failed, where, and how long each took.
set -uo pipefail
name=${1:?stage name}
shift
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
logs="$repo/.build/test-logs"
mkdir -p "$logs"
start=$(date +%s)
"$@" 2>&1 | tee "$logs/$name.log"
status=${PIPESTATUS[0]}
echo "$status $start $(date +%s)" > "$logs/$name.result"
exit "$status"
