#!/usr/bin/env python3
"""Idle keep-alive connections against switchyard (used by idle.sh; stdlib only).

Opens N connections to the proxy, sends one inference request on each (so every
connection is a real, served keep-alive connection), keeps them all open and idle
for HOLD seconds, then checks that each one got a 200 and is still open. Samples
switchyard's memory (VmRSS, VmHWM) and open file descriptors before, with all N
held, after the idle hold, and after closing them, and prints a markdown report.

Usage: idle_client.py --pid PID --port PORT --connections N --hold SECONDS
"""
import argparse
import asyncio
import os
import resource
import time
from collections import Counter

BODY = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}'
OPENING = 256  # connections being opened at once: gentle on the listen backlog
TIMEOUT = 30  # seconds allowed for one connect + request + answer


def memory(pid):
    """switchyard's VmRSS, VmHWM (MiB) and open file descriptors, right now."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"], len(os.listdir(f"/proc/{pid}/fd"))


async def read_answer(reader):
    """Reads one HTTP/1.1 response (Content-Length or chunked); returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)  # chunk + CRLF (the last one: just CRLF)
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get("content-length", 0)))
    return status


async def open_one(port, request, gate, held, failures):
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
            writer.write(request)
            status = await asyncio.wait_for(read_answer(reader), TIMEOUT)
        except Exception as e:  # counted and reported, not raised: the report says what failed
            failures[type(e).__name__] += 1
            return
        held.append((status, reader, writer))


def is_open(reader, writer):
    """A connection the server closed (FIN or RST) shows as EOF, an error or a closing transport."""
    return not (reader.at_eof() or reader.exception() or writer.transport.is_closing())


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, required=True)
    ap.add_argument("--hold", type=float, required=True)
    args = ap.parse_args()
    n = args.connections

    # One descriptor per connection, plus room for the interpreter.
    need = n + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise SystemExit(f"open files hard limit is {hard}, {need} needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

    request = (b"POST /v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY)) + BODY
    samples = [("before (no client connection)", 0, *memory(args.pid))]

    held, failures, gate = [], Counter(), asyncio.Semaphore(OPENING)
    started = time.monotonic()
    await asyncio.gather(*(open_one(args.port, request, gate, held, failures) for _ in range(n)))
    opened_in = time.monotonic() - started
    samples.append((f"{len(held)} answered, held open", len(held), *memory(args.pid)))

    await asyncio.sleep(args.hold)
    still_open = sum(is_open(r, w) for _, r, w in held)
    samples.append((f"after {args.hold:g} s idle", still_open, *memory(args.pid)))

    for _, _, w in held:
        w.close()
    await asyncio.sleep(2)
    samples.append(("2 s after the client closed them", 0, *memory(args.pid)))

    statuses = Counter(s for s, _, _ in held)
    ok = statuses.get(200, 0)
    held_rss = samples[1][2]
    peak = max(s[3] for s in samples)

    print(f"### switchyard: {n} idle keep-alive connections\n")
    print("| moment | client connections open | VmRSS MiB | VmHWM MiB | switchyard fds |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for what, conns, rss, hwm, fds in samples:
        print(f"| {what} | {conns} | {rss:.1f} | {hwm:.1f} | {fds} |")
    print()
    print(f"- connections opened and answered in {opened_in:.1f} s ({OPENING} opening at a time)")
    print(f"- answered 200: {ok}/{n}" + (f"; other statuses: {dict(statuses - Counter({200: ok}))}" if ok != len(held) else "")
          + (f"; failed: {dict(failures)}" if failures else ""))
    print(f"- still open after {args.hold:g} s idle: {still_open}/{len(held)}"
          + (f" — {len(held) - still_open} were closed by the server" if still_open != len(held) else ""))
    print(f"- memory per held connection: {(held_rss - samples[0][2]) * 1024 / max(len(held), 1):.1f} KiB (VmRSS delta / connections)")
    verdict = "PASS" if ok == n and still_open == n else "FAIL"
    print(f"- {verdict}: all {n} answered 200 and still open")
    print(f"- {'PASS' if peak < 100 else 'FAIL'}: peak RSS (VmHWM) {peak:.1f} MiB (target: under 100 MiB)")


if __name__ == "__main__":
    asyncio.run(main())
