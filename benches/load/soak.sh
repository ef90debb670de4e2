#!/usr/bin/env bash
# Soak with churn: switchyard in shadow mode (100 % mirrored, v2 comparison) under wrk
# for SOAK (default 10m) while its config is rewritten every second (each write applied:
# a change that keeps the rollout where it is) and the rollout is rolled back, then
# retried, every 5 s; its VmRSS sampled every 10 s. A leak per request, per mirror, per
# reload or per control shows as RSS still climbing after the first minute; a request
# the churn breaks shows in wrk's errors (connect, read, write, timeout, non-2xx).
#
#   SWITCHYARD_BIN=/path/to/switchyard SOAK=10m benches/load/soak.sh
#   CHURN=0 SOAK=5m benches/load/soak.sh        # load only, no reloads or controls
#
# The observers are on: every request monitored (with the shadow's answer, so output
# drift is computed all along), every tenth written to the prediction log (8 MiB files,
# 3 kept) and every prediction remembered for feedback. OBSERVE=0 leaves them at the
# row's defaults (monitoring at 10 %, no log, no feedback).
#
# PASS when the last sample is at most 1.1 × the largest sample of the first minute
# (allocator pools and buffers have grown to their working size by then) and no client
# request failed. Nothing scrapes /metrics during the soak (the counters are read once,
# at the end): a proxy must stay flat whether or not it is scraped.
# Knobs: SOAK (e.g. 30s, 10m, 1h), CONNECTIONS (default 32), CHURN (default 1; with it,
# RELOADS=0 or CONTROLS=0 leaves out one kind of churn), SWITCHYARD_BIN. A FAIL is a
# result, not a harness error: the script exits 0 once it measured.
set -euo pipefail

# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SOAK=${SOAK:-10m}
CONNECTIONS=${CONNECTIONS:-32}
CHURN=${CHURN:-1}
RELOADS=${RELOADS:-1}
CONTROLS=${CONTROLS:-1}
OBSERVE=${OBSERVE:-1}
INTERVAL=10

[[ $SOAK =~ ^([0-9]+)(s|m|h)?$ ]] || die "SOAK=$SOAK: expected e.g. 30s, 5m or 1h"
declare -A seconds_per=([s]=1 [m]=60 [h]=3600)
soak_s=$((BASH_REMATCH[1] * seconds_per[${BASH_REMATCH[2]:-s}]))
((soak_s >= INTERVAL)) || die "SOAK=$SOAK is shorter than the ${INTERVAL}s sampling interval"

# Every second for $1 seconds: rewrites the config (by renaming a complete file into place,
# alternating the comparison's absolute tolerance, which keeps the rollout where it is);
# every 5 s a rollback, the next 5 s a retry. Counts what it did in $RUN_DIR/churn.
churn() {
    local until=$(($(date +%s) + $1)) i=0 tolerance admin=http://127.0.0.1:$ADMIN_PORT/api/v1
    local writes=0 rollbacks=0 retries=0 refused=0
    while (($(date +%s) < until)); do
        sleep 1
        i=$((i + 1))
        if ((RELOADS)); then
            tolerance=$([[ $((i % 2)) == 0 ]] && echo 1.0e-6 || echo 2.0e-6)
            sed "s|^\( *protocol: v2\)$|\1\n    abs_tolerance: $tolerance|" \
                "$base" >"$yaml.tmp"
            mv "$yaml.tmp" "$yaml"
            writes=$((writes + 1))
        fi
        ((CONTROLS)) || continue
        case $((i % 10)) in
        5) curl -fsS -o /dev/null -X POST "$admin/rollback" -H 'content-type: application/json' \
            -d '{"reason":"soak"}' && rollbacks=$((rollbacks + 1)) || refused=$((refused + 1)) ;;
        0) curl -fsS -o /dev/null -X POST "$admin/retry" && retries=$((retries + 1)) ||
            refused=$((refused + 1)) ;;
        esac
    done
    echo "writes=$writes rollbacks=$rollbacks retries=$retries refused=$refused" >"$RUN_DIR/churn"
}

ensure_tools
resolve_bin
start_with_backend 8192
# The row's config (with the observers), and a copy switchyard watches, so the churn can
# rewrite it.
base=$RUN_DIR/base.yaml
cp "$LOAD_DIR/switchyard-shadow.yaml" "$base"
if ((OBSERVE)); then
    cat >>"$base" <<EOF

monitor: { sample: 100 }
capture: { path: capture/, sample: 10, max_file: 8MiB, keep: 3, redact: [/inputs/*/data] }
feedback: { retain: 10m }
EOF
fi
yaml=$RUN_DIR/switchyard-shadow.yaml
cp "$base" "$yaml"
start_switchyard "$yaml"
url=http://127.0.0.1:$PROXY_PORT$INFER_PATH
smoke_check "$url"
run_wrk "$url" 2s 0 "$RUN_DIR/warmup.out"

# wrk runs a little longer than SOAK so the sample at t = SOAK is still under load.
log "soaking for ${soak_s}s"
out=$RUN_DIR/wrk.out
start_wrk "$url" "$((soak_s + 5))s" 0 "$out"
if ((CHURN)); then
    churn "$soak_s" &
    CHURN_PID=$!
    track "$CHURN_PID"
fi
samples=$RUN_DIR/samples.tsv
start=$(date +%s)
for ((t = 0; t <= soak_s; t += INTERVAL)); do
    sleep "$(awk -v d="$((start + t))" -v now="$(date +%s.%N)" 'BEGIN {s = d - now; print (s > 0 ? s : 0)}')"
    printf '%d\t%s\n' "$t" "$(vm_kib "$SY_PID" VmRSS)" | tee -a "$samples" >&2
done
finish_wrk "$out"
if ((CHURN)); then
    wait "$CHURN_PID" || true
    untrack "$CHURN_PID"
fi

report=$RUN_DIR/soak.md
{
    churned=
    ((CHURN && RELOADS)) && churned+=", config rewritten every second"
    ((CHURN && CONTROLS)) && churned+=", rollback/retry every 5 s"
    echo "### switchyard soak: shadow 100 % v2 for $SOAK$churned"
    echo
    echo "$(date -u +%F), nproc $(nproc), kernel $(uname -r), switchyard $SWITCHYARD_COMMIT," \
        "config benches/load/$(basename "$yaml"), wrk -t1 -c$CONNECTIONS"
    echo
    echo "| t (s) | VmRSS MiB |"
    echo "| ---: | ---: |"
    awk -F'\t' '{printf "| %d | %.1f |\n", $1, $2 / 1024}' "$samples"
    echo
    awk -F'\t' '
        NR == 1 {first = $2}
        {last = $2; t = $1; if ($2 > max) max = $2}
        $1 <= 60 && $2 > minute {minute = $2}
        END {
            printf "- first %.1f MiB, last %.1f MiB, max %.1f MiB, first-minute max %.1f MiB\n",
                first / 1024, last / 1024, max / 1024, minute / 1024
            printf "- %s: last <= 1.1 x first-minute max (%.1f MiB)\n",
                last <= 1.1 * minute ? "PASS" : "FAIL", 1.1 * minute / 1024
            # Shows a climb even when SOAK is too short for the verdict to catch it.
            printf "- growth from first to last sample: %+.2f MiB/min\n", (last - first) / 1024 / (t / 60)
        }' "$samples"
    # The verdict above takes the first minute as warm-up; this shows the second half on
    # its own, for a warm-up that lasts longer (information, not a second verdict).
    awk -F'\t' '
        {t[NR] = $1; v[NR] = $2}
        END {
            h = int((NR + 1) / 2)
            printf "- second half (%d s to %d s): %.1f -> %.1f MiB, %+.2f MiB/min\n",
                t[h], t[NR], v[h] / 1024, v[NR] / 1024, (v[NR] - v[h]) / 1024 / ((t[NR] - t[h]) / 60)
        }' "$samples"
    echo "- wrk: $(sed -n 's/^RESULT //p' "$out")"
    errors=$(wrk_field "$out" errors)
    echo "- failed client requests: $errors ($( ((errors == 0)) && echo PASS || echo FAIL))"
    if ((CHURN)); then
        echo "- churn: $(cat "$RUN_DIR/churn"); reloads $(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" |
            sed -n 's/^switchyard_config_reloads_total{result="\([a-z]*\)"} \([0-9]*\)$/\1=\2/p' | paste -sd' ')"
    fi
    echo "- switchyard: $(python3 "$LOAD_DIR/counters.py" "http://127.0.0.1:$ADMIN_PORT")"
    if ((OBSERVE)); then
        echo "- observers: $(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" |
            sed -n -e 's/^switchyard_monitor_samples_total{result="\([a-z]*\)"[^}]*} \([0-9]*\)$/monitor_\1=\2/p' \
                -e 's/^switchyard_capture_records_total{result="\([a-z]*\)"[^}]*} \([0-9]*\)$/capture_\1=\2/p' |
            paste -sd' ')"
    fi
    echo "- peak RSS (VmHWM): $(awk -v k="$(vm_kib "$SY_PID" VmHWM)" 'BEGIN {printf "%.1f", k / 1024}') MiB"
} >"$report"
echo
cat "$report"
