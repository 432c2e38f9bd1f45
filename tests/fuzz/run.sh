#!/bin/sh
# Build every libFuzzer target with clang (separate build dir) and run each
# in turn for the same time.
#   tests/fuzz/run.sh [seconds]      seconds PER TARGET, default 25
#                                    (fuzz_session: GW_FUZZ_SESSION_SECONDS,
#                                    default 20; about 95 s in all)
# Env: GW_FUZZ_BUILD_DIR (default <repo>/build-fuzz),
#      GW_FUZZ_TARGETS   (default "fuzz_mqtt fuzz_spec fuzz_config fuzz_session"),
#      GW_FUZZ_SESSION_SECONDS (default 20; the whole-session target, fuzz_session.c).
# Every target runs even if an earlier one failed; the script exits
# non-zero if any crashed, leaked, hit a sanitizer report, an abort() of its
# own checks, or the memory limits (libFuzzer exit status). Reproducers are
# written to $GW_FUZZ_BUILD_DIR/artifacts/<target>-*; replay one with
#   $GW_FUZZ_BUILD_DIR/tests/fuzz/<target> <file>
set -eu
secs=${1:-25}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${GW_FUZZ_BUILD_DIR:-$root/build-fuzz}
targets=${GW_FUZZ_TARGETS:-fuzz_mqtt fuzz_spec fuzz_config fuzz_session}
session_secs=${GW_FUZZ_SESSION_SECONDS:-20}

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DGW_FUZZ=ON -DGW_BUILD_TESTS=OFF -DGW_SANITIZE=OFF >/dev/null
# shellcheck disable=SC2086
cmake --build "$build" -j2 --target $targets

mkdir -p "$build/artifacts"
failed=""
for t in $targets; do
    short=${t#fuzz_}
    extra=""
    t_secs=$secs
    case $t in
        fuzz_mqtt) max_len=8192 ;;
        fuzz_spec) max_len=16384; extra="-dict=$here/fuzz_spec.dict" ;;
        fuzz_config) max_len=4096 ;;
        fuzz_session) max_len=4096; t_secs=$session_secs ;;
        *) max_len=4096 ;;
    esac
    # New inputs go to a scratch corpus; the seed corpus in the tree is read only.
    work="$build/corpus-$short"
    mkdir -p "$work"
    echo "== $t: $t_secs s"
    # shellcheck disable=SC2086
    if ! "$build/tests/fuzz/$t" -max_total_time="$t_secs" -max_len="$max_len" -detect_leaks=1 \
            -rss_limit_mb=1024 -malloc_limit_mb=256 -print_final_stats=1 $extra \
            -artifact_prefix="$build/artifacts/$t-" "$work" "$here/corpus/$short"; then
        echo "== $t: FAILED (see $build/artifacts/)"
        failed="$failed $t"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzzing failed:$failed" >&2
    exit 1
fi
echo "fuzzing passed: $targets"
