#!/usr/bin/env python3
"""The padding flood of issue 9 against the quickstart, measured from outside.

Starts the release quickstart (dev Clerk, embedded SQLite) with trace logging, takes the token it
prints, and sends:
  1. the token followed by 1..N `=` (default N = 8000), each a distinct string that Clerk's
     decoder reads as the same token;
  2. M variants of ~50 KB (default M = 3000).
It reports the answers by status, the server's RSS before and after each flood (VmRSS from
/proc), how many tokens were verified (the library's `clerk token cache miss` trace lines on the
server's stdout: one per token that reached decoding and RSA), and how many lines the server
printed in all.

Usage: cargo build --release -p clerk-actix-examples --bin quickstart
       python3 examples/scripts/padding_flood.py [N] [M]
"""

import http.client
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.path.join(ROOT, "target", "release", "quickstart")
PORT = int(os.environ.get("FLOOD_PORT", "18080"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def flood(tokens):
    statuses = Counter()
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    for token in tokens:
        conn.request("GET", "/me", headers={"Authorization": f"Bearer {token}"})
        res = conn.getresponse()
        res.read()
        statuses[res.status] += 1
        if res.getheader("connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    conn.close()
    return statuses


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    workdir = tempfile.mkdtemp(prefix="padding_flood_")
    env = dict(os.environ)
    for var in ("CLERK_SECRET_KEY", "CLERK_JWT_KEY", "DATABASE_URL"):
        env.pop(var, None)
    env.update(PORT=str(PORT), RUST_LOG="clerk_actix=trace", NO_COLOR="1")
    log_path = os.path.join(workdir, "server.log")
    log = open(log_path, "w")
    server = subprocess.Popen([BINARY], cwd=workdir, env=env, stdout=subprocess.PIPE,
                              stderr=log, text=True)
    token = None
    lines = []

    def read_stdout():
        for line in server.stdout:
            lines.append(line)

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    deadline = time.time() + 60
    while token is None and time.time() < deadline:
        for line in list(lines):
            found = re.search(r"Authorization: Bearer ([A-Za-z0-9_\-.]+)", line)
            if found:
                token = found.group(1)
                break
        time.sleep(0.1)
    if token is None:
        server.kill()
        sys.exit("the quickstart printed no token")
    try:
        time.sleep(0.5)
        warm = flood([token] * 200)  # warm-up: one verification, then cache hits
        misses = lambda: "".join(lines).count("clerk token cache miss")  # noqa: E731
        time.sleep(0.2)
        misses_before = misses()
        rss0 = rss_kib(server.pid)
        padded = flood(f"{token}{'=' * i}" for i in range(1, n + 1))
        rss1 = rss_kib(server.pid)
        time.sleep(0.2)
        misses_padded = misses() - misses_before
        big = flood(f"{token}{'=' * (50_000 + i)}" for i in range(m))
        rss2 = rss_kib(server.pid)
        time.sleep(0.2)
        misses_big = misses() - misses_before - misses_padded
        log_lines = len(lines) + sum(1 for _ in open(log_path))
        refusal_lines = "".join(lines).count("clerk auth failed")
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"token: {len(token)} bytes; warm-up (200 requests, the plain token): answers "
          f"{dict(warm)}, verifications {misses_before}")
    print(f"padding flood, {n} variants (+1..{n} '='): answers {dict(sorted(padded.items()))}, "
          f"verifications {misses_padded}, RSS {rss0} -> {rss1} KiB ({(rss1 - rss0) / 1024:+.1f} MiB)")
    print(f"50 KB flood, {m} variants: answers {dict(sorted(big.items()))}, "
          f"verifications {misses_big}, RSS {rss1} -> {rss2} KiB ({(rss2 - rss1) / 1024:+.1f} MiB)")
    five_xx = sum(c for s, c in list(padded.items()) + list(big.items()) if s >= 500)
    refused = sum(c for s, c in list(padded.items()) + list(big.items()) if s == 401)
    print(f"5xx answers: {five_xx}; server output: {log_lines} lines in all (RUST_LOG=trace), "
          f"{refusal_lines} refusal lines for {refused} refusals")


if __name__ == "__main__":
    main()
