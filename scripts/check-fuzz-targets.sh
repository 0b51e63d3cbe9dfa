#!/usr/bin/env bash
# `make fuzz-check` (part of `make test`): type-checks every libFuzzer target of Fuzz/ against
# the modules of the debug build that `make test` has just made, so an API change that breaks
# a fuzz target fails CI in seconds, where the real fuzz build (Fuzz/run.sh: release, ASan and
# coverage of every dependency, into .build-fuzz) would add minutes. Also fails if a target
# directory is missing from Package.swift's fuzz section or from Fuzz/run.sh's list.
#
# It reads the C module maps and include paths SwiftPM used (from its build plan, .build/debug.yaml)
# and none of its other flags: type-checking needs only module interfaces, so it works the same
# whether the debug build was plain or sanitizer-instrumented (CHATMESH_SANITIZE). Debug builds
# are compiled with -enable-testing, which `@testable import ChatServer` needs.
#
#   scripts/check-fuzz-targets.sh [target ...]     (default: every Fuzz/<Target>/main.swift)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

SWIFTC=${SWIFTC:-swiftc}
BIN=${CHATMESH_DEBUG_BIN:-.build/debug}       # SwiftPM's link to .build/<triple>/debug
PLAN=${CHATMESH_BUILD_PLAN:-.build/debug.yaml}
MODULES=$BIN/Modules
if [ ! -d "$MODULES" ] || [ ! -f "$PLAN" ]; then
    echo "fuzz-check: no debug build ($MODULES, $PLAN): run 'swift build --build-tests' first" >&2
    exit 2
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for main in Fuzz/*/main.swift; do
        target=${main#Fuzz/}
        targets+=("${target%/main.swift}")
    done
fi

status=0
for target in "${targets[@]}"; do
    grep -q "fuzzTarget(\"$target\"" Package.swift ||
        { echo "fuzz-check: $target is not declared in Package.swift's fuzz section" >&2; status=1; }
    grep -qw "$target" Fuzz/run.sh ||
        { echo "fuzz-check: $target is missing from ALL_TARGETS in Fuzz/run.sh" >&2; status=1; }
done

# Every -Xcc pair SwiftPM passed to any Swift module (the C modules' maps and include paths of
# NIO, swift-atomics, CSystemd, ...), once each. No -sanitize or other codegen flag is taken.
mapfile -t clang_args < <(python3 - "$PLAN" <<'EOF'
import json, sys
seen, out = set(), []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith('args: ["'):
        continue
    args = json.loads(line[len('args: '):])
    if not args[0].endswith('swiftc'):
        continue
    for i, arg in enumerate(args[:-1]):
        if arg != '-Xcc':
            continue
        value = args[i + 1]
        # "-I" comes as its own -Xcc, with the path in the next -Xcc pair.
        if value == '-I' and i + 3 < len(args) and args[i + 2] == '-Xcc':
            pair = ('-I', args[i + 3])
        elif value.startswith('-fmodule-map-file=') or value.startswith('-I'):
            pair = (value,)
        else:
            continue
        if pair not in seen:
            seen.add(pair)
            out.append(pair)
for pair in out:
    for part in pair:
        print('-Xcc')
        print(part)
EOF
)

# The package's language mode (swiftLanguageModes in Package.swift), which the fuzz targets
# inherit; tools-version 6 defaults to 6.
language_mode=$(sed -n 's/.*swiftLanguageModes: *\[ *\.v\([0-9]*\).*/\1/p' Package.swift | head -n1)
language_mode=${language_mode:-6}

work=$(mktemp -d "${TMPDIR:-/tmp}/chatmesh-fuzz-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
# CLibFuzzer as SwiftPM would map it (an include/ header named after the target is its umbrella).
cat >"$work/CLibFuzzer.modulemap" <<EOF
module CLibFuzzer {
    umbrella header "$repo/Fuzz/CLibFuzzer/include/CLibFuzzer.h"
    export *
}
EOF
common=(-swift-version "$language_mode" -module-cache-path "$work/ModuleCache" -I "$work" -I "$MODULES"
        "${clang_args[@]}" -Xcc "-fmodule-map-file=$work/CLibFuzzer.modulemap" -DSWIFT_PACKAGE)

# FuzzSupport's interface first (no code generated), then each target against it.
if ! "$SWIFTC" -emit-module -parse-as-library -module-name FuzzSupport \
        -emit-module-path "$work/FuzzSupport.swiftmodule" "${common[@]}" Fuzz/FuzzSupport/*.swift; then
    echo "fuzz-check: Fuzz/FuzzSupport does not compile" >&2
    exit 1
fi
for target in "${targets[@]}"; do
    if "$SWIFTC" -typecheck -module-name "$target" "${common[@]}" Fuzz/"$target"/*.swift; then
        echo "fuzz-check: $target ok"
    else
        echo "fuzz-check: $target does not compile (Fuzz/$target): fix it with the API change that broke it" >&2
        status=1
    fi
done
exit $status
