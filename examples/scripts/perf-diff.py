#!/usr/bin/env python3
"""Per-request cost of each symbol in two `perf report` outputs, and their difference.

    perf record -C 0 -F 2999 -o A.data -- sleep 10   # while httpab drives row A on core 0
    perf report -i A.data --no-children --sort symbol --stdio > A.txt
    (the same for row B)
    examples/scripts/perf-diff.py A.txt RPS_A B.txt RPS_B [N]

Each symbol's share of the samples times the time per request (1 / requests per second, from
httpab's output for the same window) is its cost per request; the N (default 40) largest
differences B - A are printed. The server's core was busy throughout, so shares are of time.
"""
import re
import sys


def load(path, rps):
    costs = {}
    for line in open(path):
        m = re.match(r"\s*([\d.]+)%\s+\[(.)\]\s+(.*)$", line.rstrip())
        if m:
            sym = m.group(3).strip()[:110]
            costs[sym] = costs.get(sym, 0.0) + float(m.group(1)) / 100 * 1e9 / rps
    return costs


def main():
    a_path, a_rps, b_path, b_rps = sys.argv[1], float(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 40
    a, b = load(a_path, a_rps), load(b_path, b_rps)
    print(f"ns per request: A {1e9 / a_rps:.0f}, B {1e9 / b_rps:.0f}")
    keys = sorted(set(a) | set(b), key=lambda k: -(b.get(k, 0) - a.get(k, 0)))
    for k in keys[:n]:
        print(f"{b.get(k, 0) - a.get(k, 0):7.1f} ns  B {b.get(k, 0):6.1f}  A {a.get(k, 0):6.1f}  {k}")


if __name__ == "__main__":
    main()
