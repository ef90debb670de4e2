#!/usr/bin/env bash
# What parking idle connections costs clients that pause between requests: instructions
# per request, in user space (valgrind), for one or more switchyard binaries.
#
#   benches/load/slow_clients.sh BIN [BIN...]
#   CONNECTIONS=400 PAUSE_MS=600 benches/load/slow_clients.sh OLD_BIN NEW_BIN
#
# wrk keeps CONNECTIONS keep-alive connections (default 400), each waiting PAUSE_MS
# (default 600) after each answer before its next request: longer than the 250 ms after
# which switchyard parks a quiet connection, so every request wakes a parked one and
# starts a new hyper connection on its socket. Each binary runs under valgrind
# (cachegrind, no cache simulation) twice, for SHORT and LONG (default 5s and 15s) of
# that load, on one CPU like run.sh; the difference in instructions divided by the
# difference in requests is the cost of a request without start-up. Compare with a
# binary from before c5d3535 (no parking) to see what parking adds.
set -euo pipefail

# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($# >= 1)) || die "usage: $0 BIN [BIN...]"
CONNECTIONS=${CONNECTIONS:-400}
PAUSE_MS=${PAUSE_MS:-600}
SHORT=${SHORT:-5}
LONG=${LONG:-15}

ensure_tools
command -v valgrind >/dev/null || {
    log "installing valgrind"
    apt-get install -y valgrind >/dev/null
}
start_with_backend $((CONNECTIONS + 4096))
url=http://127.0.0.1:$PROXY_PORT$INFER_PATH

# Prints "REQUESTS INSTRUCTIONS" for binary $1 under the paced load for $2 seconds.
count() {
    local bin=$1 seconds=$2 dir=$RUN_DIR/$RANDOM
    mkdir -p "$dir"
    (cd "$dir" && exec env RUST_LOG=warn taskset -c "$PROXY_CPU" valgrind --tool=cachegrind \
        --cache-sim=no --cachegrind-out-file=/dev/null "$bin" run -c "$LOAD_DIR/switchyard-all-to-stable.yaml") \
        >"$dir/switchyard.log" 2>&1 &
    SY_PID=$!
    track "$SY_PID"
    wait_for "switchyard under valgrind" "$SY_PID" "$dir/switchyard.log" \
        http_ok "http://127.0.0.1:$ADMIN_PORT/readyz"
    WRK_DELAY_MS=$PAUSE_MS taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${seconds}s" \
        -s "$LOAD_DIR/wrk.lua" "$url" >"$dir/wrk.out" 2>&1 || die "wrk failed: $(cat "$dir/wrk.out")"
    kill -TERM "$SY_PID"
    wait "$SY_PID" || true
    untrack "$SY_PID"
    local errors
    errors=$(wrk_field "$dir/wrk.out" errors)
    [[ $errors == 0 ]] || die "wrk saw $errors errors through $bin"
    echo "$(wrk_field "$dir/wrk.out" requests)" \
        "$(sed -n 's/^==[0-9]*== I *refs: *//p' "$dir/switchyard.log" | tr -d ,)"
}

echo "| binary | instructions per request ($CONNECTIONS connections, ${PAUSE_MS} ms between requests) |"
echo "| --- | ---: |"
for bin in "$@"; do
    bin=$(readlink -f "$bin")
    [[ -x $bin ]] || die "$bin is not an executable file"
    read -r r1 i1 < <(count "$bin" "$SHORT")
    read -r r2 i2 < <(count "$bin" "$LONG")
    [[ -n $i1 && -n $i2 ]] || die "valgrind printed no count for $bin"
    awk -v r1="$r1" -v i1="$i1" -v r2="$r2" -v i2="$i2" -v bin="$bin" \
        'BEGIN {printf "| %s | %.0f |\n", bin, (i2 - i1) / (r2 - r1)}'
done
