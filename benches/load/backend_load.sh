#!/usr/bin/env bash
# How much of the paced shadow row's extra live p99 is the backend's, not the proxy's.
#
#   benches/load/backend_load.sh
#   SWITCHYARD_BIN=/path/to/switchyard ROUNDS=5 benches/load/backend_load.sh
#
# In run.sh's layout the backend nginx and wrk share CPU 0, so a 100 % mirror doubles the
# work on that CPU as well as adding the shadow thread's work on the proxy's. This runs
# switchyard all-to-stable (no mirror) at run.sh's paced load, alternately alone and
# with a second wrk on CPU 0 sending the same paced load straight to the backend's
# candidate port (what the mirrors would add there, plus that wrk's own CPU, so it
# overstates the backend's share a little). The live p99 with the extra backend load,
# against without, bounds what the backend alone does to the shadow row's p99.
set -euo pipefail

# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
PACE_MS=${PACE_MS:-5}
DURATION=${DURATION:-8s}

ensure_tools
resolve_bin
start_with_backend 8192
start_switchyard "$LOAD_DIR/switchyard-all-to-stable.yaml"
live=http://127.0.0.1:$PROXY_PORT$INFER_PATH
direct=http://127.0.0.1:$GREEN_PORT$INFER_PATH

echo "| round | extra backend load | live req/s | live p50 ms | live p99 ms |"
echo "| ---: | --- | ---: | ---: | ---: |"
for ((round = 1; round <= ROUNDS; round++)); do
    for extra in no yes; do
        out=$RUN_DIR/live-$round-$extra.out
        if [[ $extra == yes ]]; then
            # Outlasts the measured run; stopped right after it.
            env WRK_STICKY=0 WRK_DELAY_MS="$PACE_MS" taskset -c "$LOAD_CPU" \
                wrk -t1 -c"$CONNECTIONS" -d60s -s "$LOAD_DIR/wrk.lua" "$direct" >/dev/null &
            extra_pid=$!
            track "$extra_pid"
        fi
        WRK_DELAY_MS=$PACE_MS run_wrk "$live" "$DURATION" 0 "$out"
        if [[ $extra == yes ]]; then
            stop_pid "$extra_pid"
        fi
        awk -v r="$round" -v e="$extra" -v rps="$(wrk_field "$out" rps)" \
            -v p50="$(wrk_field "$out" p50_us)" -v p99="$(wrk_field "$out" p99_us)" \
            'BEGIN {printf "| %d | %s | %.0f | %.3f | %.3f |\n", r, e, rps, p50 / 1000, p99 / 1000}'
    done
done
