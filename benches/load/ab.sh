#!/usr/bin/env bash
# Compares two switchyard binaries on one benchmark row, alternating them so that both
# see the same drift of this VM, and splits CPU per request into user and system time.
#
#   benches/load/ab.sh OLD_BIN NEW_BIN
#   ROW=switchyard-shadow ROUNDS=8 DURATION=10s benches/load/ab.sh OLD_BIN NEW_BIN
#
# To get the old binary: `git worktree add /tmp/old HEAD~1 && cargo build --release
# --manifest-path /tmp/old/Cargo.toml`. Differences under about 5 % are within what this
# machine moves between starts; the per-round lines show how much the pairs disagree.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($# == 2)) || die "usage: $0 OLD_BIN NEW_BIN"
BINS=("$1" "$2")
ROW=${ROW:-switchyard-all-to-stable}
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
[[ -f $LOAD_DIR/$ROW.yaml ]] || die "ROW=$ROW: no $LOAD_DIR/$ROW.yaml"
for b in "${BINS[@]}"; do [[ -x $b ]] || die "$b is not an executable"; done

ensure_tools
start_with_backend 8192
url=http://127.0.0.1:$PROXY_PORT$INFER_PATH
hz=$(getconf CLK_TCK)

# utime and stime of process $1, in ticks.
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12, $13}'; }

results=$RUN_DIR/results
for ((round = 1; round <= ROUNDS; round++)); do
    for i in 0 1; do
        BIN=${BINS[$i]}
        start_switchyard "$LOAD_DIR/$ROW.yaml"
        smoke_check "$url"
        run_wrk "$url" 2s 0 "$RUN_DIR/warmup.out"
        read -r u0 s0 < <(ticks "$SY_PID")
        run_wrk "$url" "$DURATION" 0 "$RUN_DIR/wrk.out"
        read -r u1 s1 < <(ticks "$SY_PID")
        stop_pid "$SY_PID"
        n=$(wrk_field "$RUN_DIR/wrk.out" requests)
        p99=$(wrk_field "$RUN_DIR/wrk.out" p99_us)
        awk -v i="$i" -v n="$n" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$hz" -v p99="$p99" \
            'BEGIN {printf "%d %.2f %.2f %.2f %d\n", i, u*1e6/hz/n, s*1e6/hz/n, (u+s)*1e6/hz/n, p99}' |
            tee -a "$results" | awk -v r="$round" -v b="${BINS[$i]}" \
            '{printf "round %d %-40s user %6.2f  sys %6.2f  total %6.2f µs/req  p99 %d µs\n", r, b, $2, $3, $4, $5}' >&2
    done
done

echo
echo "| binary | user µs/req | sys µs/req | total µs/req | p99 µs | (medians of $ROUNDS, row $ROW) |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
for i in 0 1; do
    for col in 2 3 4 5; do
        awk -v i="$i" -v c="$col" '$1 == i {print $c}' "$results" | sort -g |
            awk '{v[NR] = $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m}'
    done | paste -sd' ' | awk -v b="${BINS[$i]}" '{printf "| %s | %.2f | %.2f | %.2f | %d | |\n", b, $1, $2, $3, $4}'
done
