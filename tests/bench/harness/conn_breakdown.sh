#!/usr/bin/env bash
# Scenario 6 broken down per process: start our stack (-O2 build), connect N
# idle clients with mqtt-load (default: will + persistent session, 100
# CONNECTs in flight), and print, for the gateway, the subscription-service
# and the will-service, the RSS growth per client and the CPU microseconds
# per CONNECT (utime+stime over the connect phase), then the connect rate.
#
#   tests/bench/harness/conn_breakdown.sh [BUILD_DIR] [N] [gateway options...]
#   LOADOPTS="--persistent" tests/bench/harness/conn_breakdown.sh build-bench 10000
#
# BUILD_DIR defaults to build-bench (tests/bench/harness/run.sh makes it).
set -euo pipefail
B=${1:-build-bench}; N=${2:-10000}
shift $(( $# > 2 ? 2 : $# ))
B=$(cd "$B" && pwd)
W=$(mktemp -d)
trap 'kill $G $S $L 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"' EXIT
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SP=$(port); WP=$(port); MP=$(port)
"$B/services/subscription/subscription-service" --listen "127.0.0.1:$SP" --store "$W/s.db" \
    --log-level warn >"$W/subs.log" 2>&1 & S=$!
"$B/services/will/will-service" --listen "127.0.0.1:$WP" --store "$W/w.db" \
    --publish-url "amqp://127.0.0.1:$SP" --log-level warn >"$W/will.log" 2>&1 & L=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$SP") 2>/dev/null && \
    (exec 3<>"/dev/tcp/127.0.0.1/$WP") 2>/dev/null && break; sleep 0.1; done
"$B/gateway/mqtt-gateway" --mqtt-listen "127.0.0.1:$MP" --amqp-url "amqp://127.0.0.1:$SP" \
    --route "\$mqtt.lwtservice=amqp://127.0.0.1:$WP" --log-level warn "$@" >"$W/gw.log" 2>&1 & G=$!
# ready = a CONNECT is answered with CONNACK 0 (3 while the AMQP side is not up)
for _ in $(seq 100); do mosquitto_pub -p "$MP" -t x -m y 2>/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
tk() { awk '{print $14+$15}' "/proc/$1/stat"; }
a1=$(rss $G); a2=$(rss $S); a3=$(rss $L); t1=$(tk $G); t2=$(tk $S); t3=$(tk $L)
"$B/tests/bench/mqtt_load/mqtt-load" --port "$MP" --connections "$N" ${LOADOPTS---will --persistent} \
    --connect-concurrency 100 --setup-timeout 600s --hold 4s --json 2>&1 | tail -1 >"$W/load.out" &
LP=$!
# The connect phase ends when the summed RSS stops growing (the clients are
# then held idle for 4 s): take RSS and CPU at the largest total.
max=0 b1=$a1 b2=$a2 b3=$a3 u1=$t1 u2=$t2 u3=$t3
while kill -0 $LP 2>/dev/null; do
    r1=$(rss $G); r2=$(rss $S); r3=$(rss $L); tot=$((r1 + r2 + r3))
    if [ $tot -gt $max ]; then
        max=$tot; b1=$r1; b2=$r2; b3=$r3; u1=$(tk $G); u2=$(tk $S); u3=$(tk $L)
    fi
    sleep 0.2
done
hz=$(getconf CLK_TCK)
echo "RSS bytes/client: gateway $(( (b1 - a1) * 1024 / N )) subscription-service $(( (b2 - a2) * 1024 / N ))" \
     "will-service $(( (b3 - a3) * 1024 / N )) total $(( (b1 - a1 + b2 - a2 + b3 - a3) * 1024 / N ))"
echo "CPU us/connect:   gateway $(( (u1 - t1) * 1000000 / hz / N )) subscription-service" \
     "$(( (u2 - t2) * 1000000 / hz / N )) will-service $(( (u3 - t3) * 1000000 / hz / N ))"
echo "mqtt-load: $(grep -o '"connected":[0-9]*\|"connect_rate":[0-9.]*' "$W/load.out" | tr '\n' ' ')"
