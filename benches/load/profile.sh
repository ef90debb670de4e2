#!/usr/bin/env bash
# CPU profile of switchyard under the benchmark load, as a flamegraph.
#
#   benches/load/profile.sh                          # all-to-stable, 10 s
#   ROW=switchyard-shadow DURATION=20s benches/load/profile.sh
#
# Starts the backend nginx and switchyard with benches/load/$ROW.yaml exactly as run.sh
# does (backend and wrk on CPU 0, switchyard alone on CPU 1), samples switchyard with
# `perf record -g` while wrk runs, and folds the stacks into an SVG with the inferno
# crate's tools: target/flamegraph-$ROW.svg, plus the top of `perf report` on stdout.
# perf comes from Debian's linux-perf, inferno from crates.io (`cargo install inferno`);
# both are installed when missing. The release profile keeps line tables (debug = 1), so
# frames carry function names.
set -euo pipefail

# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROW=${ROW:-switchyard-all-to-stable}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
OUT=${OUT:-$REPO/target/flamegraph-$ROW.svg}

[[ -f $LOAD_DIR/$ROW.yaml ]] || die "ROW=$ROW: no $LOAD_DIR/$ROW.yaml"

ensure_tools
if ! command -v perf >/dev/null; then
    log "installing perf (linux-perf)"
    apt-get install -y linux-perf >/dev/null
fi
if ! command -v inferno-flamegraph >/dev/null; then
    log "installing inferno (cargo install inferno)"
    cargo install --quiet inferno
fi
resolve_bin
start_with_backend 8192
start_switchyard "$LOAD_DIR/$ROW.yaml"
url=http://127.0.0.1:$PROXY_PORT$INFER_PATH
smoke_check "$url"
run_wrk "$url" 2s 0 "$RUN_DIR/warmup.out"

# perf samples for as long as wrk runs: started first, stopped (SIGINT) when wrk is done.
perf record -F 999 --call-graph "${CALL_GRAPH:-fp}" -p "$SY_PID" -o "$RUN_DIR/perf.data" >"$RUN_DIR/perf.log" 2>&1 &
perf_pid=$!
track "$perf_pid"
sleep 0.5
run_wrk "$url" "$DURATION" 0 "$RUN_DIR/wrk.out"
kill -INT "$perf_pid"
wait "$perf_pid" || true
untrack "$perf_pid"

mkdir -p "$(dirname "$OUT")"
perf script -i "$RUN_DIR/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph \
    --title "switchyard $ROW, $(sed -n 's/^RESULT //p' "$RUN_DIR/wrk.out")" >"$OUT"
cp "$RUN_DIR/perf.data" "${OUT%.svg}.perf.data"
echo "flamegraph: $OUT (perf data: ${OUT%.svg}.perf.data, for perf report -i)"
echo
echo "Top of the profile (self time; [k] is the kernel):"
perf report -i "$RUN_DIR/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null |
    grep '%' | cut -c1-150 | sed -n 1,25p
