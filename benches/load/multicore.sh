#!/usr/bin/env bash
# switchyard on both CPUs (the multi-thread runtime every multi-core machine gets),
# rather than pinned to one as in run.sh: how many upstream connections it holds for
# CONNECTIONS (default 32) keep-alive clients, sampled during a DURATION (default 10s)
# wrk run, and what wrk saw. Everything shares the two CPUs here, so req/s and latency
# are not comparable with run.sh; the connection count is the point: a pool that loses
# track of its connections across worker threads opens far more than the clients.
#
#   benches/load/multicore.sh
#   SWITCHYARD_BIN=/path/to/switchyard ROW=switchyard-shadow benches/load/multicore.sh
set -euo pipefail

# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROW=${ROW:-switchyard-all-to-stable}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-10s}
PROXY_CPU=0,1

ensure_tools
resolve_bin
start_with_backend 8192
start_switchyard "$LOAD_DIR/$ROW.yaml"

# Established connections from switchyard to the backend ports.
upstream() {
    ss -tnH state established "( dport = :$BLUE_PORT or dport = :$GREEN_PORT )" | wc -l
}

out=$RUN_DIR/wrk.out
start_wrk "http://127.0.0.1:$PROXY_PORT$INFER_PATH" "$DURATION" 0 "$out"
samples=()
secs=${DURATION%s}
for ((i = 0; i < 3; i++)); do
    sleep "$(awk -v s="$secs" 'BEGIN {print s / 4}')"
    samples+=("$(upstream)")
done
finish_wrk "$out"
echo "| row | clients | upstream connections (3 samples) | req/s | p99 ms | worker threads |"
echo "| --- | ---: | --- | ---: | ---: | ---: |"
printf '| %s | %s | %s | %s | %s | %s |\n' "$ROW" "$CONNECTIONS" "${samples[*]}" \
    "$(wrk_field "$out" rps)" "$(awk -v u="$(wrk_field "$out" p99_us)" 'BEGIN {printf "%.3f", u / 1000}')" \
    "$(find "/proc/$SY_PID/task" -mindepth 1 -maxdepth 1 | wc -l)"
