#!/usr/bin/env bash
# Load benchmark: switchyard against nginx and haproxy as plain reverse proxies, and
# switchyard's rollout modes against each other, on one machine with 2 CPUs.
#
#   benches/load/run.sh                        # from the repo root; builds switchyard
#   SWITCHYARD_BIN=/path/to/switchyard DURATION=5s ONLY="nginx switchyard-all-to-stable" benches/load/run.sh
#
# Knobs: DURATION (measured run per row, default 10s), REPEAT (rounds over all rows,
# default 3; the table shows each row's median), CONNECTIONS (default 32),
# SWITCHYARD_BIN (skip the build), ONLY (space-separated row ids, see ROWS below),
# OUT (where the markdown report is also written, default target/load-report.md).
#
# What is measured, per row: wrk's req/s, p50 and p99 over DURATION (after a 2 s
# warm-up); the proxy's CPU time per request (utime + stime of its processes across the
# measured run ÷ requests completed); its peak RSS (VmHWM). The proxy has CPU 1 to
# itself; the backend nginx and wrk share CPU 0, so the backend is identical for every
# row and "proxy CPU µs/req" is the cost of the proxy alone. The CPU that processes not
# started here used meanwhile is reported too: a row with more than a little of it was
# disturbed (a build, another benchmark) and is flagged.
#
# Figures on a shared 2-CPU virtual machine move by up to 2x between starts of the same
# binary (nginx's included), so every row is measured REPEAT times, in rounds over all
# rows (drift hits every row alike), each with a fresh proxy process, and the table
# shows the median with the CPU range.
#
# The targets at the end are checked against the nginx / all-to-stable rows of the same
# run, so they compare like with like on whatever machine this runs. A FAIL is a result,
# not a harness error: the script exits 0 once every row was measured.
set -euo pipefail

# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10s}
REPEAT=${REPEAT:-3}
CONNECTIONS=${CONNECTIONS:-32}
OUT=${OUT:-$REPO/target/load-report.md}
WARMUP=2s

# Row ids, in table order, and their labels.
ROWS=(direct nginx haproxy switchyard-all-to-stable switchyard-canary-sticky
    switchyard-shadow switchyard-fallback-analysis switchyard-shadow-slow
    nginx-paced switchyard-all-to-stable-paced switchyard-shadow-paced
    nginx-large haproxy-large switchyard-all-to-stable-large)
declare -A LABEL=(
    [direct]="direct (no proxy)"
    [nginx]="nginx"
    [haproxy]="haproxy"
    [switchyard-all-to-stable]="switchyard all-to-stable"
    [switchyard-canary-sticky]="switchyard canary 50/50 sticky"
    [switchyard-shadow]="switchyard shadow 100% v2"
    [switchyard-fallback-analysis]="switchyard fallback+analysis"
    [switchyard-shadow-slow]="switchyard shadow, slow candidate (2 s)"
    [nginx-paced]="nginx, paced"
    [switchyard-all-to-stable-paced]="switchyard all-to-stable, paced"
    [switchyard-shadow-paced]="switchyard shadow 100% v2, paced"
    [nginx-large]="nginx, 1.3 MB tensor"
    [haproxy-large]="haproxy, 1.3 MB tensor"
    [switchyard-all-to-stable-large]="switchyard all-to-stable, 1.3 MB tensor"
)
# The paced rows: every connection waits PACE_MS after each answer, so the offered load
# (about 32 x 1000 / (PACE_MS + latency) req/s) stays below what switchyard can mirror
# and compare in full on one CPU. Saturated, switchyard serves live traffic first and
# drops mirrors (the shadow thread has the lowest CPU priority); paced, every request is
# mirrored and compared, which is the row that measures what shadowing costs.
PACE_MS=${PACE_MS:-5}
# The large-tensor rows (-large): every request a V2 body of about 1.3 MB (lib.sh's
# LARGE_SHAPE), to LARGE_PATH, where the backend reads it all before answering.

selected() { [[ -z ${ONLY:-} || " $ONLY " == *" $1 "* ]]; }

for row in ${ONLY:-}; do
    [[ -v LABEL[$row] ]] || die "unknown row '$row' in ONLY; rows: ${ROWS[*]}"
done

# nginx as a reverse proxy on CPU 1: 1 worker, HTTP/1.1 keep-alive to the backend.
# Sets PROXY_PIDS (master + worker: both are charged) and RSS_PID (the worker).
start_nginx_proxy() {
    local dir=$RUN_DIR/nginx-proxy
    mkdir -p "$dir"
    nginx_proxy_conf "$dir" on
    start_nginx "$dir" "$dir/nginx.conf" "$PROXY_CPU"
    wait_for "nginx proxy" "$NGINX_PID" "$dir/error.log" port_open "$PROXY_PORT"
    # The master listens before it forks its worker.
    wait_for "nginx proxy" "$NGINX_PID" "$dir/error.log" pgrep -P "$NGINX_PID" >/dev/null
    RSS_PID=$(pgrep -P "$NGINX_PID")
    PROXY_PIDS=("$NGINX_PID" "$RSS_PID")
}

# haproxy on CPU 1: one thread, connection reuse to the backend, no logging.
# Sets PROXY_PIDS and RSS_PID (the single haproxy process).
start_haproxy() {
    local dir=$RUN_DIR/haproxy
    mkdir -p "$dir"
    cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4000

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    http-reuse always

frontend bench
    bind 127.0.0.1:$PROXY_PORT
    default_backend blue

backend blue
    server blue 127.0.0.1:$BLUE_PORT
EOF
    taskset -c "$PROXY_CPU" haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
    local pid=$!
    track "$pid"
    wait_for haproxy "$pid" "$dir/haproxy.log" port_open "$PROXY_PORT"
    PROXY_PIDS=("$pid")
    RSS_PID=$pid
}

# Measures one row and appends it to RESULTS; for switchyard rows, also records what
# switchyard did (counters) in NOTES.
bench_row() {
    local row=$1 path=$INFER_PATH sticky=0 pace=0 body=
    local out=$RUN_DIR/wrk-$row.out
    local kind=${row%-paced}
    kind=${kind%-large}
    if [[ $row == *-paced ]]; then pace=$PACE_MS; fi
    if [[ $row == *-large ]]; then
        path=$LARGE_PATH
        body=$LARGE_BODY
    fi
    local url=http://127.0.0.1:$PROXY_PORT$path
    PROXY_PIDS=()
    RSS_PID=
    log "row $row"
    case $kind in
    direct) url=http://127.0.0.1:$BLUE_PORT$path ;;
    nginx) start_nginx_proxy ;;
    haproxy) start_haproxy ;;
    switchyard-*)
        if [[ $row == switchyard-shadow-slow ]]; then start_slow_backend; fi
        start_switchyard "$LOAD_DIR/$kind.yaml"
        PROXY_PIDS=("$SY_PID")
        RSS_PID=$SY_PID
        ;;
    esac
    if [[ $row == switchyard-canary-sticky ]]; then sticky=1; fi
    smoke_check "$url" "$body"

    # Warm-up: connections, upstream pools and allocator caches settle; not measured.
    local WRK_BODY_FILE=$body
    WRK_DELAY_MS=$pace run_wrk "$url" "$WARMUP" "$sticky" "$RUN_DIR/warmup-$row.out"

    # The measured run, with the proxy's CPU time sampled right before and right after.
    # Every process's CPU time too, to tell whether anything else ran meanwhile.
    local ticks_before=0 ticks_after=0 foreign
    python3 "$LOAD_DIR/foreign_cpu.py" snapshot "$RUN_DIR/procs-before.json"
    if [[ -n $RSS_PID ]]; then ticks_before=$(cpu_ticks "${PROXY_PIDS[@]}"); fi
    WRK_DELAY_MS=$pace run_wrk "$url" "$DURATION" "$sticky" "$out"
    if [[ -n $RSS_PID ]]; then ticks_after=$(cpu_ticks "${PROXY_PIDS[@]}"); fi
    python3 "$LOAD_DIR/foreign_cpu.py" snapshot "$RUN_DIR/procs-after.json"
    foreign=$(python3 "$LOAD_DIR/foreign_cpu.py" report "$RUN_DIR/procs-before.json" \
        "$RUN_DIR/procs-after.json" $$)

    local requests cpu=- rss=-
    requests=$(wrk_field "$out" requests)
    ((requests > 0)) || die "row $row: wrk completed no request ($(cat "$out"))"
    if [[ -n $RSS_PID ]]; then
        cpu=$(awk -v t=$((ticks_after - ticks_before)) -v hz="$CLK_TCK" -v n="$requests" \
            'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
        rss=$(awk -v k="$(vm_kib "$RSS_PID" VmHWM)" 'BEGIN {printf "%.1f", k / 1024}')
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$row" "${LABEL[$row]}" "$requests" \
        "$(wrk_field "$out" errors)" "$(wrk_field "$out" rps)" "$(wrk_field "$out" p50_us)" \
        "$(wrk_field "$out" p99_us)" "$cpu" "$rss" "$foreign" >>"$RESULTS"
    log "  $(sed -n 's/^RESULT //p' "$out") cpu_us_per_req=$cpu peak_rss_mib=$rss foreign_cpu_pct=$foreign"

    if [[ $row == switchyard-* && $ROUND == "$REPEAT" ]]; then
        echo "- ${LABEL[$row]}: $(python3 "$LOAD_DIR/counters.py" "http://127.0.0.1:$ADMIN_PORT")" >>"$NOTES"
    fi

    # Stopping the first pid stops the whole proxy (the nginx master takes its worker).
    if [[ -n $RSS_PID ]]; then stop_pid "${PROXY_PIDS[0]}"; fi
    if [[ $row == switchyard-shadow-slow ]]; then stop_pid "$SLOW_PID"; fi
}

main() {
    ensure_tools
    check_ports_free "$PROXY_PORT" "$BLUE_PORT" "$GREEN_PORT" "$SLOW_PORT" "$ADMIN_PORT"
    resolve_bin
    raise_nofile 8192
    setup_runtime
    CLK_TCK=$(getconf CLK_TCK)
    RESULTS=$RUN_DIR/results.tsv
    NOTES=$RUN_DIR/notes.md
    printf 'id\tlabel\trequests\terrors\trps\tp50_us\tp99_us\tcpu_us_per_req\tpeak_rss_mib\tforeign_cpu_pct\n' >"$RESULTS"
    : >"$NOTES"
    LARGE_BODY=$RUN_DIR/large-body.json
    write_large_body "$LARGE_BODY"

    start_backend
    local row
    for ((ROUND = 1; ROUND <= REPEAT; ROUND++)); do
        log "round $ROUND of $REPEAT"
        for row in "${ROWS[@]}"; do
            if selected "$row"; then bench_row "$row"; fi
        done
    done

    local report=$RUN_DIR/report.md
    {
        echo "## switchyard load benchmark"
        echo
        echo "$(date -u +%F), nproc $(nproc), kernel $(uname -r), nginx $NGINX_VERSION," \
            "haproxy $HAPROXY_VERSION, wrk $WRK_VERSION, switchyard $SWITCHYARD_COMMIT."
        echo "wrk -t1 -c$CONNECTIONS -d$DURATION (after a $WARMUP warm-up), POST $INFER_PATH" \
            "(large-tensor rows: $(stat -c %s "$LARGE_BODY") bytes to $LARGE_PATH);" \
            "wrk and the backend nginx on CPU $LOAD_CPU, the proxy alone on CPU $PROXY_CPU;" \
            "each row measured $REPEAT times with a fresh proxy, medians shown."
        echo
        python3 "$LOAD_DIR/report.py" "$RESULTS"
        if [[ -s $NOTES ]]; then
            echo
            echo "What switchyard did in each row (admin API, after the measured run):"
            echo
            cat "$NOTES"
        fi
    } >"$report"
    mkdir -p "$(dirname "$OUT")"
    cp "$report" "$OUT"
    echo
    cat "$report"
    log "report written to $OUT"
}

main "$@"
