#!/usr/bin/env bash
# The whole test suite: install dependencies, build with AddressSanitizer +
# UndefinedBehaviorSanitizer, run the C unit tests (ctest/cmocka), the system
# tests (pytest over the real binaries) and a bounded fuzzing run.
# Idempotent; safe to run again. Environment:
#   GW_BUILD_DIR   build directory (default: build-asan)
#   GW_FUZZ_SECONDS seconds of fuzzing per target (default 60; 0 skips)
#   PYTEST_ARGS    extra pytest arguments (e.g. "-k will")
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

bash scripts/deps.sh

BUILD=${GW_BUILD_DIR:-$ROOT/build-asan}
export GW_BUILD_DIR=$BUILD
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DGW_SANITIZE=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

echo "== unit tests (ctest)"
(cd "$BUILD" && ctest --output-on-failure -j2)

echo "== system tests (pytest)"
set +e
/usr/bin/python3 -m pytest -q ${PYTEST_ARGS:-} tests/system
rc=$?
set -e
# pytest exits 5 when it collected nothing; that is a failure of the suite.
if [ $rc -ne 0 ]; then
  echo "pytest failed with exit code $rc" >&2
  exit $rc
fi

FUZZ_SECONDS=${GW_FUZZ_SECONDS:-60}
if [ "$FUZZ_SECONDS" != "0" ] && [ -x tests/fuzz/run.sh ]; then
  echo "== fuzzing (${FUZZ_SECONDS}s per target)"
  tests/fuzz/run.sh "$FUZZ_SECONDS"
fi
echo "== all tests passed"
