#!/bin/sh
# gw-entrypoint - start one of the gateway's executables with the open-files
# limit raised to its hard limit.
#
# Every MQTT client is one socket (and, with --connection-mode per-client,
# one more per AMQP destination), and the binaries do not raise
# RLIMIT_NOFILE themselves yet. Container runtimes often hand out a soft
# limit of 1024 with a much higher hard limit; an unprivileged process may
# raise its soft limit up to the hard one, which is what this does. The
# hard limit itself is the runtime's/node's business (docs/operations.md,
# "Many connections").
set -eu
hard=$(ulimit -Hn)
if [ "$hard" = "unlimited" ]; then
    # Linux caps RLIMIT_NOFILE at fs.nr_open (1048576 by default).
    hard=1048576
fi
ulimit -Sn "$hard" 2>/dev/null || echo "gw-entrypoint: cannot raise the open-files limit to $hard (soft limit $(ulimit -Sn))" >&2
exec "$@"
