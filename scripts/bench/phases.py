#!/usr/bin/env python3
"""Where a dac collection spent its time, from its acquisition log alone.

    scripts/bench/phases.py BUNDLE/logs/acquisition.jsonl [--top N]

Each artifact record has `start_mono_ns` (when the scheduler handed out the request's slot) and
`mono_ns` (when its record was written, i.e. after the body was written, checked and read back).
Per tier: the first start, the last record, the sum of the requests' own durations (how much work
overlapped), and the slowest requests. Times are in milliseconds from the session's monotonic
origin; session_end gives the collection's length before sealing.
"""
import json
import sys
from collections import defaultdict


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    top = 5
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1])
        del args[i:i + 2]
    tiers = defaultdict(list)
    end_ns = None
    for line in open(args[0], encoding="utf-8"):
        r = json.loads(line)
        if r.get("event") == "session_end":
            end_ns = r["mono_ns"]
        if r.get("event") != "artifact" or r.get("derived_from"):
            continue
        if r.get("object") == "live":
            continue  # the live event stream lasts the whole session by design
        tiers[r["tier"]].append((r["start_mono_ns"], r["mono_ns"], r["endpoint"], r["object"], r["bytes"]))
    print(f"{'tier':<14}{'n':>5}{'first start':>13}{'last end':>11}{'span':>9}{'sum of req':>12}  slowest (ms)")
    for tier in sorted(tiers, key=lambda t: min(a[0] for a in tiers[t])):
        rows = tiers[tier]
        first = min(a[0] for a in rows) / 1e6
        last = max(a[1] for a in rows) / 1e6
        total = sum(a[1] - a[0] for a in rows) / 1e6
        slow = sorted(rows, key=lambda a: a[0] - a[1])[:top]
        slow_txt = ", ".join(f"{a[2].split('/')[-1] or a[2]}:{(a[1] - a[0]) / 1e6:.0f}" for a in slow)
        print(f"{tier:<14}{len(rows):>5}{first:>13.1f}{last:>11.1f}{last - first:>9.1f}{total:>12.1f}  {slow_txt}")
    if end_ns is not None:
        print(f"session_end at {end_ns / 1e6:.1f} ms (sealing follows)")


if __name__ == "__main__":
    main()
