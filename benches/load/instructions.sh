#!/usr/bin/env bash
# Instructions per request, in user space, for one or more switchyard binaries: a
# figure that, unlike CPU time on a shared VM, does not move between runs, so it shows
# a change of a few percent in our own code (the kernel's share is not counted; it is
# about the same per request for any proxy making the same system calls).
#
#   benches/load/instructions.sh BIN [BIN...]
#   ROW=switchyard-shadow N=20000 benches/load/instructions.sh OLD_BIN NEW_BIN
#   benches/load/instructions.sh nginx BIN   # "nginx": nginx as the proxy, as in run.sh
#
# Each binary runs under valgrind (cachegrind, no cache simulation) twice: serving N/5
# and N requests (ab, CONCURRENCY=8 keep-alive connections), on one CPU like run.sh (so the same runtime). The difference between the two runs'
# instruction counts, divided by the difference in requests, is the cost of a request
# without start-up and shut-down.
#
# CALLGRIND=1 runs the larger one under callgrind instead and keeps its profile in
# target/callgrind-ROW-K.out, K numbering the binaries (read it with `callgrind_annotate --inclusive=yes`).
#
# DHAT=1 counts heap allocations per request instead (valgrind's dhat, same two runs)
# of a binary built without jemalloc (cargo build --release --no-default-features),
# and keeps each run's profile in target/dhat-ROW-K-REQUESTS.json (open it in dhat's viewer,
# /usr/libexec/valgrind/dh_view.html; sites are "tbk" blocks per program point).
#
# valgrind counts each byte a `rep movsb` copies as an instruction, so large memcpys
# (moving a future of several KB) weigh far more here than on the CPU.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($# >= 1)) || die "usage: $0 BIN [BIN...]"
ROW=${ROW:-switchyard-all-to-stable}
N=${N:-20000}
CONCURRENCY=${CONCURRENCY:-8}
[[ -f $LOAD_DIR/$ROW.yaml ]] || die "ROW=$ROW: no $LOAD_DIR/$ROW.yaml"

ensure_tools
for cmd in valgrind ab; do
    if ! command -v "$cmd" >/dev/null; then
        log "installing valgrind and ab (apache2-utils)"
        apt-get install -y valgrind apache2-utils >/dev/null
    fi
done
start_with_backend 8192
url=http://127.0.0.1:$PROXY_PORT$INFER_PATH
printf '%s' "$REQUEST_BODY" >"$RUN_DIR/body.json"

# A row that mirrors gets an unbounded max_in_flight, and each run waits until every
# mirror has been answered and compared: under valgrind the low-priority shadow thread
# falls behind, and dropped mirrors would make the figure depend on timing.
YAML=$LOAD_DIR/$ROW.yaml
MIRRORS=0
if grep -q '^ *max_in_flight:' "$YAML"; then
    MIRRORS=1
    sed 's/^\( *max_in_flight:\).*/\1 1000000/' "$YAML" >"$RUN_DIR/$ROW.yaml"
    YAML=$RUN_DIR/$ROW.yaml
fi

# Sampled exchanges the monitor has taken, whatever became of them (parsed, unparseable,
# dropped): each run waits until this stops growing, so the figure includes the
# observers' work, and shows how many were dropped (a full queue under valgrind).
observed() {
    curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null |
        awk '/^switchyard_monitor_samples_total\{/ {s += $2} END {print s + 0}'
}

# The shadow requests switchyard has finished, whatever their outcome.
mirrored() {
    curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null |
        awk '/^switchyard_shadow_requests_total\{/ {s += $2} END {print s + 0}'
}

# Instructions executed (or with DHAT, heap blocks allocated) by binary $1 (or "nginx")
# serving $2 requests, start to exit; $3 numbers the binary for the profiles kept.
count() {
    local bin=$1 n=$2 k=$3 dir=$RUN_DIR/$RANDOM
    mkdir -p "$dir" "$REPO/target"
    local tool=(--tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null)
    if [[ -n ${DHAT:-} ]]; then
        tool=(--tool=dhat "--dhat-out-file=$REPO/target/dhat-$ROW-$k-$n.json")
    elif [[ -n ${CALLGRIND:-} && $n == "$N" ]]; then
        tool=(--tool=callgrind "--callgrind-out-file=$REPO/target/callgrind-$ROW-$k.out")
    fi
    if [[ $bin == nginx ]]; then
        nginx_proxy_conf "$dir" off # one process, so valgrind sees all of it
        taskset -c "$PROXY_CPU" valgrind "${tool[@]}" nginx -p "$dir" -c "$dir/nginx.conf" \
            -e "$dir/error.log" >"$dir/switchyard.log" 2>&1 &
        SY_PID=$!
        track "$SY_PID"
        wait_for "nginx under valgrind" "$SY_PID" "$dir/switchyard.log" port_open "$PROXY_PORT"
    else
        (cd "$dir" && exec env RUST_LOG=warn taskset -c "$PROXY_CPU" valgrind "${tool[@]}" "$bin" run -c "$YAML") \
            >"$dir/switchyard.log" 2>&1 &
        SY_PID=$!
        track "$SY_PID"
        wait_for "switchyard under valgrind" "$SY_PID" "$dir/switchyard.log" \
            http_ok "http://127.0.0.1:$ADMIN_PORT/readyz"
    fi
    ab -q -k -n "$n" -c "$CONCURRENCY" -p "$RUN_DIR/body.json" -T application/json "$url" >"$dir/ab.log" 2>&1 ||
        die "ab failed: $(cat "$dir/ab.log")"
    grep -q '^Failed requests: *0$' "$dir/ab.log" || die "ab saw failures: $(cat "$dir/ab.log")"
    if ((MIRRORS)); then
        local i
        for ((i = 0; i < 1200; i++)); do
            (($(mirrored) >= n)) && break
            sleep 0.5
        done
    fi
    local seen=-1 now i
    for ((i = 0; i < 120; i++)); do
        now=$(observed)
        ((now == seen)) && break
        seen=$now
        sleep 1
    done
    curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null |
        sed -n -e 's/^switchyard_shadow_requests_total{outcome="\([a-z]*\)"[^}]*} \([0-9]*\)$/\1=\2/p' \
            -e 's/^switchyard_monitor_samples_total{result="\([a-z]*\)"[^}]*} \([0-9]*\)$/\1=\2/p' |
        paste -sd' ' >"$RUN_DIR/shadow-$n"
    kill -TERM "$SY_PID"
    wait "$SY_PID" || true
    untrack "$SY_PID"
    if [[ -n ${DHAT:-} ]]; then
        sed -n 's/^==[0-9]*== Total: .* in \([0-9,]*\) blocks.*/\1/p' "$dir/switchyard.log" | tr -d ,
    else
        sed -n -e 's/^==[0-9]*== I *refs: *//p' -e 's/^==[0-9]*== Collected : *//p' "$dir/switchyard.log" | tr -d ,
    fi
}

WHAT="instructions per request (user space, row $ROW)" DIGITS=0
[[ -z ${DHAT:-} ]] || WHAT="heap allocations per request (row $ROW)" DIGITS=1
echo "| binary | $WHAT | mirrors and monitor samples in the larger run |"
echo "| --- | ---: | --- |"
k=0
for bin in "$@"; do
    k=$((k + 1))
    # Each binary runs from its own directory: a relative path would not resolve there.
    [[ $bin == nginx ]] || bin=$(readlink -f "$bin")
    [[ $bin == nginx || -x $bin ]] || die "$bin is not an executable file"
    # dhat sees only the system allocator's calls: a jemalloc build would count nothing.
    if [[ -n ${DHAT:-} && $bin != nginx ]] && grep -q _rjem_malloc "$bin"; then
        die "$bin allocates through jemalloc, which dhat cannot see: build it with cargo build --release --no-default-features"
    fi
    small=$(count "$bin" $((N / 5)) "$k")
    large=$(count "$bin" "$N" "$k")
    [[ -n $small && -n $large ]] || die "valgrind printed no count for $bin"
    awk -v a="$small" -v b="$large" -v n=$((N - N / 5)) -v bin="$bin" -v d="$DIGITS" \
        -v m="$(cat "$RUN_DIR/shadow-$N")" \
        'BEGIN {printf "| %s | %.*f | %s |\n", bin, d, (b - a) / n, (m == "" ? "-" : m)}'
done
