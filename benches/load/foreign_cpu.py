#!/usr/bin/env python3
"""How much CPU other processes (a build, another benchmark) used while a benchmark ran:
on a 2-CPU machine they compete with wrk, the backend and the proxy, and the figures of
that run are disturbed. Stdlib only.

  foreign_cpu.py snapshot FILE            CPU ticks of every process, now
  foreign_cpu.py report BEFORE AFTER PID  % of one CPU used, between the two snapshots,
                                          by processes that are not PID or its descendants

Processes that both started and ended between the snapshots are missed, so the figure
is a lower bound.
"""
import json
import os
import sys
import time


def processes():
    """pid -> (ppid, utime + stime in clock ticks) of every process still there."""
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        # After the command name: state ppid ... utime(14th field overall) stime(15th).
        procs[int(name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return procs


def descendants(root, procs):
    children = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    ours, todo = set(), [root]
    while todo:
        pid = todo.pop()
        ours.add(pid)
        todo.extend(children.get(pid, []))
    return ours


def main():
    if sys.argv[1] == "snapshot":
        with open(sys.argv[2], "w") as f:
            json.dump({"at": time.monotonic(), "procs": processes()}, f)
        return
    with open(sys.argv[2]) as f:
        before = json.load(f)
    with open(sys.argv[3]) as f:
        after = json.load(f)
    b, a = before["procs"], after["procs"]
    procs = {int(pid): tuple(v) for pid, v in {**b, **a}.items()}
    ours = descendants(int(sys.argv[4]), procs)
    ticks = sum(a[pid][1] - b.get(pid, (0, 0))[1] for pid in a if int(pid) not in ours)
    seconds = after["at"] - before["at"]
    print(f"{ticks / os.sysconf('SC_CLK_TCK') / seconds * 100:.0f}")


if __name__ == "__main__":
    main()
