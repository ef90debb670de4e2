# shellcheck shell=bash
# Shared helpers for the switchyard load benchmarks (run.sh, idle.sh, soak.sh).
# Sourced, not run; the callers use `set -euo pipefail`.
#
# Layout of every benchmark on a 2-CPU machine:
#   CPU 0: the backend nginx (and the slow python backend), the load generator
#   CPU 1: the proxy under test, alone, so its CPU time per request is clean.

LOAD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$LOAD_DIR/../.." && pwd)

# Fixed ports; the YAML files in this directory use the same ones.
# shellcheck disable=SC2034 # used by the scripts that source this file
PROXY_PORT=18080   # the proxy under test
BLUE_PORT=18101    # backend nginx, "blue" (stable)
GREEN_PORT=18102   # the same nginx, "green" (candidate)
SLOW_PORT=18103    # python backend answering after 2 s (slow-candidate shadow row)
ADMIN_PORT=18901   # switchyard admin API

LOAD_CPU=0
PROXY_CPU=1

INFER_PATH=/v2/models/m/infer
# The request the benchmarks send (wrk.lua and idle_client.py carry the same body).
REQUEST_BODY='{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}'
# The large-tensor rows send a V2 request of about 1.3 MB instead, to their own path:
# one FP32 tensor of 3 x 224 x 224 values (an image classifier's input), written by
# write_large_body. The backend reads the whole body before it answers (see
# start_backend), as a model server must.
LARGE_SHAPE=(1 3 224 224)
LARGE_PATH=/v2/models/large/infer
# The backend's fixed answer (slow_backend.py answers the same).
ANSWER='{"model_name":"m","id":"1","outputs":[{"name":"predict","datatype":"FP32","shape":[1,3],"data":[0.1,0.7,0.2]}]}'

# nginx and haproxy live in /usr/sbin, which is not on a non-root user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Installs whatever tool is missing (Debian/Ubuntu packages) and checks there are
# two CPUs to pin to.
ensure_tools() {
    local -A package=([nginx]=nginx [haproxy]=haproxy [wrk]=wrk [python3]=python3
        [curl]=curl [pgrep]=procps [taskset]=util-linux)
    local cmd missing=() sudo=()
    for cmd in "${!package[@]}"; do
        command -v "$cmd" >/dev/null || missing+=("${package[$cmd]}")
    done
    if ((${#missing[@]})); then
        if ((EUID != 0)); then
            command -v sudo >/dev/null || die "not root and no sudo: install ${missing[*]} first"
            sudo=(sudo)
        fi
        log "installing ${missing[*]}"
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
    (($(nproc) >= 2)) || die "needs 2 CPUs (load on CPU $LOAD_CPU, proxy on CPU $PROXY_CPU); nproc is $(nproc)"
    NGINX_VERSION=$(nginx -v 2>&1 | sed 's|.*nginx/||')
    HAPROXY_VERSION=$(haproxy -v | awk 'NR == 1 {print $3}')
    WRK_VERSION=$({ wrk -v 2>&1 || true; } | awk 'NR == 1 {print $2}') # `wrk -v` exits 1
    log "nginx $NGINX_VERSION, haproxy $HAPROXY_VERSION, wrk $WRK_VERSION"
}

# Sets BIN to the switchyard under test: $SWITCHYARD_BIN, or a fresh release build.
resolve_bin() {
    if [[ -n ${SWITCHYARD_BIN:-} ]]; then
        BIN=$(readlink -f "$SWITCHYARD_BIN")
        [[ -x $BIN ]] || die "SWITCHYARD_BIN=$SWITCHYARD_BIN is not an executable file"
    else
        command -v cargo >/dev/null || die "cargo not found: install Rust, or set SWITCHYARD_BIN"
        log "building switchyard (cargo build --release)"
        (cd "$REPO" && cargo build --release)
        BIN=$REPO/target/release/switchyard
    fi
    # The work tree's commit; a binary passed in may have been built from another one.
    SWITCHYARD_COMMIT=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)
    if [[ -n ${SWITCHYARD_BIN:-} ]]; then
        SWITCHYARD_COMMIT+=" (work tree; binary $BIN)"
    fi
    log "switchyard $SWITCHYARD_COMMIT"
}

# Raises the open-files limit of this shell, and so of everything it starts, to at least $1.
raise_nofile() {
    local want=$1
    (($(ulimit -n) >= want)) && return 0
    ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    (($(ulimit -n) >= want)) || die "open files limit is $(ulimit -n), need $want (hard limit: $(ulimit -Hn))"
}

# --- processes ---------------------------------------------------------------

PIDS=() # every process started and not yet stopped; cleanup stops them

# Creates RUN_DIR for all runtime files (configs, logs, pid files, state) and makes sure
# every process started is stopped on exit, error, Ctrl-C or TERM. RUN_DIR is removed
# after a successful run and kept (for its logs) after a failed one.
setup_runtime() {
    RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-load.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

cleanup() {
    local rc=$? pid
    set +e
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if ((rc == 0)); then
        rm -rf "$RUN_DIR"
    else
        log "failed (exit $rc); logs kept in $RUN_DIR"
    fi
}

track() { PIDS+=("$1"); }

untrack() {
    local pid kept=()
    for pid in "${PIDS[@]}"; do [[ $pid == "$1" ]] || kept+=("$pid"); done
    PIDS=("${kept[@]}")
}

# True while the process runs (an exited child stays a zombie until waited for).
alive() {
    [[ -r /proc/$1/stat ]] && [[ $(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) != [ZX] ]]
}

# Stops a process we started, and its direct children (nginx workers): TERM, then
# KILL after 5 s.
stop_pid() {
    local pid=$1 kids i
    kids=$(pgrep -P "$pid" || true)
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    # shellcheck disable=SC2086 # $kids is a list of pids
    kill -KILL "$pid" $kids 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    untrack "$pid"
}

# Runs a command in the background and waits for it: a signal then interrupts the wait
# at once (a foreground command would hold the traps until it ends) and cleanup stops it.
run_tracked() {
    "$@" &
    local pid=$!
    track "$pid"
    local rc=0
    wait "$pid" || rc=$?
    untrack "$pid"
    return "$rc"
}

# --- ports and readiness -----------------------------------------------------

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Fails if a port is taken: whatever listens there would be measured instead of ours.
check_ports_free() {
    local port
    for port in "$@"; do
        ! port_open "$port" || die "port $port on 127.0.0.1 is already in use; stop whatever listens there"
    done
}

# Polls `cmd...` for up to 10 s; fails early, showing the log, if process $2 dies.
wait_for() {
    local what=$1 pid=$2 logfile=$3 i
    shift 3
    for ((i = 0; i < 100; i++)); do
        "$@" && return 0
        alive "$pid" || {
            tail -n 20 "$logfile" >&2
            die "$what exited during startup (log: $logfile)"
        }
        sleep 0.1
    done
    tail -n 20 "$logfile" >&2
    die "$what not ready after 10 s (log: $logfile)"
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

# One inference request through $1 (with the body in file $2 when given); fails unless
# it is answered 200 with the backend's answer (catches a proxy that is up but
# misrouting before any number is taken).
smoke_check() {
    local got body=("-d" "$REQUEST_BODY")
    if [[ -n ${2:-} ]]; then body=(--data-binary "@$2"); fi
    got=$(curl -fsS --max-time 10 -H 'content-type: application/json' "${body[@]}" "$1") ||
        die "smoke request to $1 failed"
    [[ $got == "$ANSWER" ]] || die "unexpected answer from $1: $got"
}

# Writes the large-tensor rows' request body (about 1.3 MB, see LARGE_SHAPE) to $1.
write_large_body() {
    python3 - "$1" "${LARGE_SHAPE[@]}" <<'EOF'
import json, math, random, sys
shape = [int(d) for d in sys.argv[2:]]
rng = random.Random(1)
data = [round(rng.random(), 6) for _ in range(math.prod(shape))]
tensor = {"name": "x", "datatype": "FP32", "shape": shape, "data": data}
with open(sys.argv[1], "w") as f:
    json.dump({"inputs": [tensor]}, f, separators=(",", ":"))
EOF
}

# --- servers -----------------------------------------------------------------

# The top of every nginx config: one worker, in the foreground, all runtime files in $1
# so it runs as the current user without touching /etc/nginx or /var.
nginx_preamble() {
    local dir=$1
    ((EUID == 0)) && echo "user $(id -un) $(id -gn);" # else workers run as nobody, locked out of $dir
    cat <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
EOF
}

nginx_http_common() {
    local dir=$1
    cat <<EOF
    access_log off;
    keepalive_requests 1000000;
    # Room for the large-tensor rows' bodies, kept in memory (a proxy buffering them).
    client_max_body_size 8m;
    client_body_buffer_size 2m;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
EOF
}

# nginx as the reverse proxy measured against switchyard (1 worker, HTTP/1.1 keep-alive
# to the backend), written to $1/nginx.conf. $2: master_process on (run.sh) or off (one
# process, for valgrind in instructions.sh).
nginx_proxy_conf() {
    local dir=$1 master=${2:-on}
    {
        nginx_preamble "$dir" | sed "s/^master_process on;/master_process $master;/"
        echo "http {"
        nginx_http_common "$dir"
        cat <<EOF
    upstream blue {
        server 127.0.0.1:$BLUE_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT;
        location / {
            proxy_pass http://blue;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    } >"$dir/nginx.conf"
}

# Starts an nginx with config $2 in directory $1 on CPU $3; sets NGINX_PID (the master).
start_nginx() {
    local dir=$1 conf=$2 cpu=$3
    taskset -c "$cpu" nginx -p "$dir" -c "$conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
    NGINX_PID=$!
    track "$NGINX_PID"
}

# The common start of a benchmark: the standard ports free, the open-files limit raised
# to at least $1, RUN_DIR made, and the backend nginx serving.
start_with_backend() {
    check_ports_free "$PROXY_PORT" "$BLUE_PORT" "$GREEN_PORT" "$ADMIN_PORT"
    raise_nofile "$1"
    setup_runtime
    start_backend
}

# The model server: ONE nginx, 1 worker on CPU 0, answering every request (POST
# included) with a fixed v2 inference response, on the blue and the green port.
# nginx's `return` answers before it has read a body (and throws the rest away after),
# so LARGE_PATH reads the whole body first, passing it to the same answer over a unix
# socket.
start_backend() {
    local dir=$RUN_DIR/backend
    mkdir -p "$dir"
    {
        nginx_preamble "$dir"
        echo "http {"
        nginx_http_common "$dir"
        cat <<EOF
    upstream answer {
        server unix:$dir/answer.sock;
        keepalive 64;
    }
    server {
        listen unix:$dir/answer.sock;
        location / {
            default_type application/json;
            return 200 '$ANSWER';
        }
    }
    server {
        listen 127.0.0.1:$BLUE_PORT;
        listen 127.0.0.1:$GREEN_PORT;
        location / {
            default_type application/json;
            return 200 '$ANSWER';
        }
        location = $LARGE_PATH {
            proxy_pass http://answer;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    } >"$dir/nginx.conf"
    start_nginx "$dir" "$dir/nginx.conf" "$LOAD_CPU"
    BACKEND_PID=$NGINX_PID
    wait_for "backend nginx" "$BACKEND_PID" "$dir/error.log" port_open "$BLUE_PORT"
    wait_for "backend nginx" "$BACKEND_PID" "$dir/error.log" port_open "$GREEN_PORT"
    smoke_check "http://127.0.0.1:$BLUE_PORT$INFER_PATH"
}

# The slow candidate: answers like the backend, after 2 s. Sets SLOW_PID.
start_slow_backend() {
    local logfile=$RUN_DIR/slow-backend.log
    taskset -c "$LOAD_CPU" python3 "$LOAD_DIR/slow_backend.py" "$SLOW_PORT" 2 >"$logfile" 2>&1 &
    SLOW_PID=$!
    track "$SLOW_PID"
    wait_for "slow backend" "$SLOW_PID" "$logfile" port_open "$SLOW_PORT"
}

# Validates and starts switchyard with config $1 on CPU 1; sets SY_PID. It runs in its
# own directory under RUN_DIR, where the configs' relative state path lands.
start_switchyard() {
    local yaml=$1 dir
    dir=$RUN_DIR/$(basename "$yaml" .yaml)
    mkdir -p "$dir"
    "$BIN" validate -c "$yaml" >"$dir/validate.log" 2>&1 || {
        cat "$dir/validate.log" >&2
        die "$yaml is not a valid switchyard config"
    }
    (cd "$dir" && exec env RUST_LOG=warn taskset -c "$PROXY_CPU" "$BIN" run -c "$yaml") \
        >"$dir/switchyard.log" 2>&1 &
    SY_PID=$!
    track "$SY_PID"
    wait_for switchyard "$SY_PID" "$dir/switchyard.log" http_ok "http://127.0.0.1:$ADMIN_PORT/readyz"
}

# --- measurements ------------------------------------------------------------

# utime + stime of the given processes, in clock ticks (/proc/PID/stat fields 14 and
# 15; after the ") " that ends the command name they are the 12th and 13th).
cpu_ticks() {
    local pid
    for pid in "$@"; do sed 's/^.*) //' "/proc/$pid/stat"; done | awk '{t += $12 + $13} END {print t}'
}

# A /proc/PID/status memory field (VmRSS, VmHWM) of process $1, in KiB.
vm_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# Starts wrk from CPU 0 in the background (sets WRK_PID): 1 thread, $CONNECTIONS
# keep-alive connections, POSTs from wrk.lua (their body from the file $WRK_BODY_FILE
# when set). Args: URL DURATION STICKY(0|1) OUTFILE.
start_wrk() {
    local url=$1 duration=$2 sticky=$3 out=$4
    env WRK_STICKY="$sticky" WRK_DELAY_MS="${WRK_DELAY_MS:-0}" WRK_BODY_FILE="${WRK_BODY_FILE:-}" \
        taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$CONNECTIONS" -d"$duration" -s "$LOAD_DIR/wrk.lua" "$url" >"$out" &
    WRK_PID=$!
    track "$WRK_PID"
}

# Waits for the wrk started last; fails unless it wrote its RESULT line to $1.
finish_wrk() {
    local out=$1
    wait "$WRK_PID" || die "wrk failed: $(cat "$out")"
    untrack "$WRK_PID"
    grep -q '^RESULT ' "$out" || die "wrk printed no RESULT line: $(cat "$out")"
}

# One wrk run, waited for. Args as start_wrk.
run_wrk() {
    start_wrk "$@"
    finish_wrk "$4"
}

# Field $2 (requests, errors, rps, p50_us, ...) of wrk's RESULT line in file $1.
wrk_field() { sed -n 's/^RESULT //p' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
