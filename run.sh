#!/usr/bin/env bash
# Install, build and run the whole stack in the foreground on localhost:
#   subscription-service  AMQP listener  127.0.0.1:${SUBS_PORT:-5673}
#   will-service          AMQP listener  127.0.0.1:${WILL_PORT:-5674}
#   mqtt-gateway          MQTT listener  ${MQTT_HOST:-0.0.0.0}:${MQTT_PORT:-1883}
# wired together without a router through the gateway's routing table.
# State lives in ${DATA_DIR:-./data} and survives a restart. Ctrl-C stops all.
# Idempotent: re-running rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)

bash scripts/deps.sh
BUILD=${GW_BUILD_DIR:-$ROOT/build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGW_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)"

MQTT_HOST=${MQTT_HOST:-0.0.0.0}
MQTT_PORT=${MQTT_PORT:-1883}
SUBS_PORT=${SUBS_PORT:-5673}
WILL_PORT=${WILL_PORT:-5674}
DATA_DIR=${DATA_DIR:-$ROOT/data}
LOG_LEVEL=${LOG_LEVEL:-info}
mkdir -p "$DATA_DIR"

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping stack" >&2
  # Gateway first (clients get clean closes), then the services.
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop INT TERM EXIT

wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 did not open" >&2
  return 1
}

"$BUILD/services/subscription/subscription-service" --listen "127.0.0.1:$SUBS_PORT" \
  --store "$DATA_DIR/subscriptions.db" --log-level "$LOG_LEVEL" &
pids+=($!)
wait_port "$SUBS_PORT"

"$BUILD/services/will/will-service" --listen "127.0.0.1:$WILL_PORT" \
  --store "$DATA_DIR/wills.db" --publish-url "amqp://127.0.0.1:$SUBS_PORT" \
  --log-level "$LOG_LEVEL" &
pids+=($!)
wait_port "$WILL_PORT"

"$BUILD/gateway/mqtt-gateway" --mqtt-listen "$MQTT_HOST:$MQTT_PORT" \
  --amqp-url "amqp://127.0.0.1:$SUBS_PORT" \
  --route "\$mqtt.lwtservice=amqp://127.0.0.1:$WILL_PORT" --log-level "$LOG_LEVEL" &
pids+=($!)
wait_port "$MQTT_PORT"
echo "stack up: MQTT on $MQTT_HOST:$MQTT_PORT, data in $DATA_DIR (Ctrl-C to stop)" >&2
wait -n "${pids[@]}"
