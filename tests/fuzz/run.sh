#!/bin/sh
# Build fuzz_mqtt with clang + libFuzzer (separate build dir) and run it.
#   tests/fuzz/run.sh [seconds]      default 60
# Env: GW_FUZZ_BUILD_DIR (default <repo>/build-fuzz).
# Exits non-zero on any crash, leak, sanitizer report or abort (libFuzzer
# exit status); the reproducer is written to $GW_FUZZ_BUILD_DIR/artifacts/.
set -eu
secs=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${GW_FUZZ_BUILD_DIR:-$root/build-fuzz}

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DGW_FUZZ=ON -DGW_BUILD_TESTS=OFF -DGW_SANITIZE=OFF >/dev/null
cmake --build "$build" -j2 --target fuzz_mqtt

# New inputs go to a scratch corpus; the seed corpus in the tree is read only.
work="$build/corpus-mqtt"
mkdir -p "$work" "$build/artifacts"
"$build/tests/fuzz/fuzz_mqtt" -max_total_time="$secs" -max_len=8192 -detect_leaks=1 \
    -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/" "$work" "$here/corpus/mqtt"
