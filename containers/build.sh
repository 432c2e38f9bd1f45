#!/usr/bin/env bash
# Build the three images of containers/Containerfile with podman (or docker).
#   containers/build.sh [TAG]            # default tag: the project version
# Environment: REGISTRY (default "localhost/mqtt-amqp"), ENGINE (podman|docker).
# Push with "$ENGINE push $REGISTRY/<image>:$TAG" afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-$(sed -n 's/^project(mqtt_amqp_gateway VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)}
REGISTRY=${REGISTRY:-localhost/mqtt-amqp}
ENGINE=${ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}
for target in mqtt-gateway will-service subscription-service; do
  echo "== $REGISTRY/$target:$TAG" >&2
  "$ENGINE" build -f containers/Containerfile --target "$target" -t "$REGISTRY/$target:$TAG" .
done
