#!/usr/bin/env bash
# Side-by-side benchmark: our stack vs mosquitto 2.0 vs RabbitMQ 3.10, one
# system after another on 127.0.0.1 (docs/performance.md).
#
#   tests/bench/harness/run.sh                 # all scenarios, 10 s each, all systems
#   tests/bench/harness/run.sh --quick         # 3 s each
#   tests/bench/harness/run.sh --smoke         # ~1 s each, mosquitto only (< 2 min)
#   tests/bench/harness/run.sh --systems ours,rabbitmq --scenarios 1,4 --scale 0.2
#
# Builds an -O2 tree without sanitizers in $GW_BENCH_BUILD (default
# <repo>/build-bench) first. mqtt-load must build; a gateway or service that
# does not build makes "ours" unavailable, and the other systems still run.
# Every other option goes to bench.py (--help).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
BUILD=${GW_BENCH_BUILD:-$ROOT/build-bench}
JOBS=${GW_BENCH_JOBS:-2}

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGW_SANITIZE=OFF >/dev/null \
  || { echo "run.sh: cmake configure failed" >&2; exit 1; }
cmake --build "$BUILD" -j"$JOBS" --target mqtt-load >/dev/null \
  || { echo "run.sh: mqtt-load does not build" >&2; exit 1; }
for t in subscription-service will-service mqtt-gateway; do
  if ! cmake --build "$BUILD" -j"$JOBS" --target "$t" >"$BUILD/bench-build-$t.log" 2>&1; then
    echo "run.sh: $t does not build (see $BUILD/bench-build-$t.log); 'ours' will be unavailable" >&2
    # A stale binary from an earlier build must not be measured as ours.
    find "$BUILD" -type f -name "$t" -perm -u+x -delete 2>/dev/null
  fi
done

# 15 000 idle clients (scenario 6) need more than the usual 1024 descriptors.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 "$HERE/bench.py" --build-dir "$BUILD" "$@"
