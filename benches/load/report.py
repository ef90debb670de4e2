#!/usr/bin/env python3
"""Turns run.sh's results (a TSV, one line per target and round) into the markdown table
and the PASS/FAIL list of performance targets, all computed from that same run. A target
measured in several rounds is shown by its medians (peak RSS: the highest), with the range
of its CPU figures.

Usage: report.py RESULTS.tsv   (stdlib only)
TSV columns: id, label, requests, errors, rps, p50_us, p99_us, cpu_us_per_req, peak_rss_mib,
foreign_cpu_pct (cpu and rss are "-" for the direct row, which has no proxy; the last is
the CPU used by processes this benchmark did not start during the measured run, in % of
one CPU).
"""
import csv
import statistics
import sys

# (what is checked, row, metric, factor, reference row): row's metric <= factor x reference's.
TARGETS = [
    ("switchyard all-to-stable CPU µs/req ≤ 0.8 × nginx's",
     "switchyard-all-to-stable", "cpu_us_per_req", 0.8, "nginx"),
    ("switchyard all-to-stable p99 ≤ nginx's p99",
     "switchyard-all-to-stable", "p99_us", 1.0, "nginx"),
    ("canary 50/50 sticky CPU µs/req ≤ 1.1 × all-to-stable's",
     "switchyard-canary-sticky", "cpu_us_per_req", 1.1, "switchyard-all-to-stable"),
    ("shadow 100 % (paced, every request compared) CPU µs per live request ≤ 2.5 × nginx's (paced)",
     "switchyard-shadow-paced", "cpu_us_per_req", 2.5, "nginx-paced"),
    ("shadow 100 % (paced) live p99 ≤ 1.2 × all-to-stable's p99 (paced)",
     "switchyard-shadow-paced", "p99_us", 1.2, "switchyard-all-to-stable-paced"),
    ("shadow 100 % (saturated: live first, mirrors dropped) live p99 ≤ 1.2 × all-to-stable's p99",
     "switchyard-shadow", "p99_us", 1.2, "switchyard-all-to-stable"),
    ("slow-candidate shadow live p99 ≤ 1.2 × all-to-stable's p99",
     "switchyard-shadow-slow", "p99_us", 1.2, "switchyard-all-to-stable"),
]
# Above this much CPU used by other processes (% of one CPU), a row's figures are disturbed.
NOISY_PCT = 10
UNIT = {"cpu_us_per_req": "µs/req", "p99_us": "ms p99"}


def shown(metric, value):
    return f"{value / 1000:.3f}" if metric == "p99_us" else f"{value:.2f}"


def merge(rounds):
    """One row from a target's rounds: medians, the highest peak RSS, summed counts."""
    first = rounds[0]
    if len(rounds) == 1:
        return dict(first, cpu_range="")

    def med(key):
        return statistics.median(float(r[key]) for r in rounds)

    row = dict(first)
    row["rps"] = med("rps")
    row["p50_us"] = int(med("p50_us"))
    row["p99_us"] = int(med("p99_us"))
    row["requests"] = sum(int(r["requests"]) for r in rounds)
    row["errors"] = sum(int(r["errors"]) for r in rounds)
    row["foreign_cpu_pct"] = max(float(r["foreign_cpu_pct"]) for r in rounds)
    row["cpu_range"] = ""
    if first["cpu_us_per_req"] != "-":
        cpus = [float(r["cpu_us_per_req"]) for r in rounds]
        row["cpu_us_per_req"] = f"{statistics.median(cpus):.2f}"
        row["cpu_range"] = f" ({min(cpus):.1f}–{max(cpus):.1f})"
        row["peak_rss_mib"] = f"{max(float(r['peak_rss_mib']) for r in rounds):.1f}"
    return row


def main():
    with open(sys.argv[1], newline="") as f:
        lines = list(csv.DictReader(f, delimiter="\t"))
    grouped = {}
    for r in lines:
        grouped.setdefault(r["id"], []).append(r)
    rows = [merge(rounds) for rounds in grouped.values()]
    by_id = {r["id"]: r for r in rows}

    print("| target | req/s | p50 ms | p99 ms | proxy CPU µs/req (range) | peak RSS MiB | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['label']} | {float(r['rps']):,.0f} | {int(r['p50_us']) / 1000:.3f} "
              f"| {int(r['p99_us']) / 1000:.3f} | {r['cpu_us_per_req']}{r['cpu_range']} | {r['peak_rss_mib']} "
              f"| {r['errors']} of {int(r['requests']):,} |")

    print("\nCPU used by other processes on this machine during each measured run (% of one CPU): "
          + ", ".join(f"{r['id']} {r['foreign_cpu_pct']}" for r in rows) + ".")
    noisy = [r["id"] for r in rows if float(r["foreign_cpu_pct"]) > NOISY_PCT]
    if noisy:
        print(f"\n**Warning: over {NOISY_PCT} % for {', '.join(noisy)}: something else competed for"
              " the 2 CPUs, so those figures are disturbed. Rerun on a quiet machine.**")

    print("\nTargets (from this run):\n")
    for what, row, metric, factor, ref in TARGETS:
        if row not in by_id or ref not in by_id:
            print(f"- n/a  {what} (not measured in this run: ONLY)")
            continue
        value, limit = float(by_id[row][metric]), factor * float(by_id[ref][metric])
        verdict = "PASS" if value <= limit else "FAIL"
        print(f"- {verdict} {what}: {shown(metric, value)} vs limit {shown(metric, limit)} {UNIT[metric]}"
              f" ({value / float(by_id[ref][metric]):.2f}× {ref})")


if __name__ == "__main__":
    main()
