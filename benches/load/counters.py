#!/usr/bin/env python3
"""Prints one line summing up what a running switchyard did, from its admin API:
rollout phase and weight, requests served per backend (and how many were not 2xx),
shadow outcomes and comparison results, fallbacks and rollbacks.

It shows that each benchmark row exercised what it claims to (a 50/50 split, mirrors
compared and agreeing, nothing rolled back). Usage: counters.py ADMIN_URL   (stdlib only)
"""
import json
import re
import sys
import urllib.request
from collections import defaultdict

SAMPLE = re.compile(r'^(\w+)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def main():
    admin = sys.argv[1].rstrip("/")
    status = json.loads(get(admin + "/api/v1/status"))
    sums = defaultdict(float)  # (metric, label value) -> total
    for line in get(admin + "/metrics").splitlines():
        m = SAMPLE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))
        if name == "switchyard_requests_total":
            sums[("served", labels.get("backend"))] += value
            if not labels.get("code", "").startswith("2"):
                sums[("not 2xx", labels.get("backend"))] += value
        elif name == "switchyard_shadow_requests_total":
            sums[("shadow", labels.get("outcome"))] += value
        elif name == "switchyard_shadow_comparisons_total":
            sums[("compared", labels.get("result"))] += value
        elif name == "switchyard_fallbacks_total":
            sums[("fallbacks", "")] += value
        elif name == "switchyard_rollbacks_total":
            sums[("rollbacks", labels.get("trigger"))] += value

    def group(kind):
        items = [f"{k[1]}={int(v)}" if k[1] else str(int(v)) for k, v in sorted(sums.items()) if k[0] == kind]
        return f"{kind}: {' '.join(items)}" if items else None

    parts = [f"phase {status.get('phase')}, weight {status.get('weight')}, mirror {status.get('mirror')}"]
    parts += filter(None, map(group, ["served", "not 2xx", "shadow", "compared", "fallbacks", "rollbacks"]))
    print("; ".join(parts))


if __name__ == "__main__":
    main()
