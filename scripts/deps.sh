#!/usr/bin/env bash
# Install the build and test dependencies from Debian 12 packages.
# Idempotent: does nothing (not even apt-get update) when all are present.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libqpid-proton11-dev libevent-dev libssl-dev libjansson-dev libsqlite3-dev
  libcmocka-dev libmosquitto-dev
  python3-pytest python3-paho-mqtt python3-qpid-proton
  mosquitto mosquitto-clients sqlite3 openssl procps python3-yaml
  rabbitmq-server
)
# Extra packages only the benchmarks need.
if [ "${GW_DEPS_EXTRA:-}" = "1" ]; then
  PKGS+=(valgrind)
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
