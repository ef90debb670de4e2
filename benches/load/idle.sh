#!/usr/bin/env bash
# Idle-connection memory: how much switchyard holds for 10 000 open, idle keep-alive
# client connections (think many SDK clients with pooled connections and little traffic).
#
#   SWITCHYARD_BIN=/path/to/switchyard benches/load/idle.sh
#
# Starts the backend nginx and switchyard all-to-stable (limits.header_timeout is 10m
# there: hyper's header read timeout also closes keep-alive connections idle that long),
# then idle_client.py opens IDLE_CONNECTIONS (default 10000) connections, sends one
# request on each, and holds them open and idle for HOLD seconds (default 30). It reports
# switchyard's VmRSS / VmHWM before, with all held, and after, and checks that every
# connection got a 200 and is still open. Target: RSS under 100 MiB.
# A FAIL is a result, not a harness error: the script exits 0 once it measured.
set -euo pipefail

# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
HOLD=${HOLD:-30}

ensure_tools
resolve_bin
# switchyard and the client each need a descriptor per connection, switchyard also
# one per pooled upstream connection.
start_with_backend $((IDLE_CONNECTIONS + 4096))
start_switchyard "$LOAD_DIR/switchyard-all-to-stable.yaml"
smoke_check "http://127.0.0.1:$PROXY_PORT$INFER_PATH"

log "holding $IDLE_CONNECTIONS connections for ${HOLD}s"
report=$RUN_DIR/idle.md
{
    echo "$(date -u +%F), nproc $(nproc), kernel $(uname -r), switchyard $SWITCHYARD_COMMIT," \
        "config benches/load/switchyard-all-to-stable.yaml"
    echo
    run_tracked taskset -c "$LOAD_CPU" python3 "$LOAD_DIR/idle_client.py" --pid "$SY_PID" \
        --port "$PROXY_PORT" --connections "$IDLE_CONNECTIONS" --hold "$HOLD"
} >"$report"
echo
cat "$report"
