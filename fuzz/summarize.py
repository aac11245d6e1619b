#!/usr/bin/env python3
"""Prints fuzz/results/campaigns.jsonl as the Markdown table RELIABILITY.md quotes.

Usage: python3 fuzz/summarize.py [--since YYYY-MM-DD]   (one row per campaign line, oldest first)
"""
import json
import pathlib
import sys

since = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--since" else ""
path = pathlib.Path(__file__).parent / "results" / "campaigns.jsonl"
print("| Target | Commit | Date | Executions (asked) | Seconds | cov | ft | Corpus before → after | Crash files |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|")
for line in path.read_text().splitlines():
    if not line.strip():
        continue
    c = json.loads(line)
    if c["date"] < since:
        continue
    print(
        f"| `{c['target']}` | {c['commit']} | {c['date']} | {c['executions']:,} ({c['runs_asked']:,}) "
        f"| {c['seconds']:,} | {c['cov']:,} | {c['ft']:,} | {c['corpus_before']:,} → {c['corpus_after']:,} "
        f"| {c['crashes']} |"
    )
