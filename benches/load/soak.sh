#!/usr/bin/env bash
# Memory flatness under sustained load: switchyard in shadow mode (100 % mirrored, v2
# comparison) under wrk for SOAK (default 5m), its VmRSS sampled every 10 s. A leak per
# request or per mirror shows as RSS still climbing after the first minute.
#
#   SWITCHYARD_BIN=/path/to/switchyard SOAK=5m benches/load/soak.sh
#
# PASS when the last sample is at most 1.1 × the largest sample of the first minute
# (allocator pools and buffers have grown to their working size by then). Nothing
# scrapes /metrics during the soak: a proxy must stay flat whether or not it is scraped.
# Knobs: SOAK (e.g. 30s, 5m, 1h), CONNECTIONS (default 32), SWITCHYARD_BIN.
# A FAIL is a result, not a harness error: the script exits 0 once it measured.
set -euo pipefail

# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SOAK=${SOAK:-5m}
CONNECTIONS=${CONNECTIONS:-32}
INTERVAL=10

[[ $SOAK =~ ^([0-9]+)(s|m|h)?$ ]] || die "SOAK=$SOAK: expected e.g. 30s, 5m or 1h"
declare -A seconds_per=([s]=1 [m]=60 [h]=3600)
soak_s=$((BASH_REMATCH[1] * seconds_per[${BASH_REMATCH[2]:-s}]))
((soak_s >= INTERVAL)) || die "SOAK=$SOAK is shorter than the ${INTERVAL}s sampling interval"

ensure_tools
resolve_bin
start_with_backend 8192
yaml=$LOAD_DIR/switchyard-shadow.yaml
start_switchyard "$yaml"
url=http://127.0.0.1:$PROXY_PORT$INFER_PATH
smoke_check "$url"
run_wrk "$url" 2s 0 "$RUN_DIR/warmup.out"

# wrk runs a little longer than SOAK so the sample at t = SOAK is still under load.
log "soaking for ${soak_s}s"
out=$RUN_DIR/wrk.out
start_wrk "$url" "$((soak_s + 5))s" 0 "$out"
samples=$RUN_DIR/samples.tsv
start=$(date +%s)
for ((t = 0; t <= soak_s; t += INTERVAL)); do
    sleep "$(awk -v d="$((start + t))" -v now="$(date +%s.%N)" 'BEGIN {s = d - now; print (s > 0 ? s : 0)}')"
    printf '%d\t%s\n' "$t" "$(vm_kib "$SY_PID" VmRSS)" | tee -a "$samples" >&2
done
finish_wrk "$out"

report=$RUN_DIR/soak.md
{
    echo "### switchyard soak: shadow 100 % v2 for $SOAK"
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
    echo "- switchyard: $(python3 "$LOAD_DIR/counters.py" "http://127.0.0.1:$ADMIN_PORT")"
    echo "- peak RSS (VmHWM): $(awk -v k="$(vm_kib "$SY_PID" VmHWM)" 'BEGIN {printf "%.1f", k / 1024}') MiB"
} >"$report"
echo
cat "$report"
