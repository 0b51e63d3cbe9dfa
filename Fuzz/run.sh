#!/usr/bin/env bash
# `make fuzz`: builds the libFuzzer targets of Fuzz/ (one per decoder) with sanitizer
# coverage and AddressSanitizer, runs each for FUZZ_SECONDS on its committed seeds, and
# prints the executions per target. Exits 1 if any target found a crash, a timeout or an OOM;
# the input is kept in Fuzz/crashes/<target>/ (replay: .build-fuzz/release/<target> FILE), and
# every later run replays the inputs kept there before it mutates anything.
#
#   Fuzz/run.sh [seconds] [target ...]     (default: 60 s, every target)
set -u
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-60}
shift || true
ALL_TARGETS=(FuzzEnginePacket FuzzPollingPayload FuzzEngineRequest FuzzSocketPacket FuzzJSON
             FuzzMeshFrame FuzzMeshHandshake FuzzRESP FuzzClusterConfig FuzzWebSocketFrame
             FuzzRedisTopology)
[ $# -gt 0 ] && TARGETS=("$@") || TARGETS=("${ALL_TARGETS[@]}")

SWIFT=${SWIFT:-swift}
SCRATCH=.build-fuzz
WORK=$SCRATCH/work
CLANG_RT=$(dirname "$(readlink -f "$(command -v swiftc)")")/../lib/clang
LIBFUZZER=$(ls "$CLANG_RT"/*/lib/linux/libclang_rt.fuzzer_no_main-$(uname -m).a 2>/dev/null | head -n1)
if [ -z "$LIBFUZZER" ]; then
    echo "fuzz: libclang_rt.fuzzer_no_main not found under $CLANG_RT" >&2
    exit 2
fi

# Coverage and ASan on every Swift module (ours and the NIO code under the mesh and RESP
# decoders); libFuzzer linked as a library, since SwiftPM's executables bring their own main.
BUILD_FLAGS=(
    -c release --scratch-path "$SCRATCH"
    -Xswiftc -sanitize=address
    -Xswiftc -sanitize-coverage=edge,indirect-calls,trace-cmp,inline-8bit-counters,pc-table
    -Xlinker --whole-archive -Xlinker "$LIBFUZZER" -Xlinker --no-whole-archive -Xlinker -lstdc++
)
mkdir -p "$WORK"
for target in "${TARGETS[@]}"; do
    echo "== building $target"
    CHATMESH_FUZZ=1 "$SWIFT" build "${BUILD_FLAGS[@]}" --product "$target" >"$WORK/build.log" 2>&1
    status=$?
    grep -v -e "Cannot export local symbol" -e "^\[[0-9]*/[0-9]*\] " "$WORK/build.log"
    if [ $status -ne 0 ]; then
        echo "fuzz: building $target failed" >&2
        exit 2
    fi
done

export SWIFT_BACKTRACE=enable=no   # a trap must end the process at once, for libFuzzer to see it
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
failed=0
summary=()
for target in "${TARGETS[@]}"; do
    corpus=$WORK/$target/corpus      # new inputs go here, never into the committed seeds
    crashes=Fuzz/crashes/$target
    log=$WORK/$target/fuzz.log
    mkdir -p "$corpus" "$crashes"
    dict=()
    [ -f "Fuzz/dict/$target.dict" ] && dict=(-dict="Fuzz/dict/$target.dict")
    echo "== fuzzing $target for ${SECONDS_PER_TARGET}s (log: $log)"
    before=$(ls "$crashes" | wc -l)
    # Seeds, then every input that once crashed (kept as regressions), then mutations.
    "$SCRATCH/release/$target" "$corpus" "Fuzz/corpus/$target" "$crashes" "${dict[@]}" \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="$crashes/" >"$log" 2>&1
    status=$?
    after=$(ls "$crashes" | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    slowest=$(sed -n 's/^stat::slowest_unit_time_sec: *//p' "$log" | tail -n1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)
    units=$(ls "$corpus" | wc -l)
    result=ok
    if [ $status -ne 0 ] || [ "$after" -gt "$before" ]; then
        result="FAILED (exit $status; see $log and $crashes/)"
        failed=1
        grep -E "^(==[0-9]+==ERROR|SUMMARY|Fatal error|.*invariant broken|.*Test unit written)" "$log" | head -n 8
    fi
    summary+=("$(printf '%-20s %10s execs %7s/s  cov %5s  new units %5s  slowest %3ss  rss %5sMB  %s' \
        "$target" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$units" "${slowest:-?}" "${rss:-?}" "$result")")
done

echo
echo "== fuzz summary (${SECONDS_PER_TARGET}s per target)"
printf '%s\n' "${summary[@]}"
exit $failed
