#!/usr/bin/env bash
# Runs every fuzz target for RUNS executions (default 10 million) on a working copy of its
# committed corpus, then minimises the grown corpus back into fuzz/corpus/<target>/.
# Usage: fuzz/campaign.sh [target ...]   (RUNS=..., MAX_TIME=seconds per target)
# Logs and final stats: fuzz/logs/<target>.log; crashes: fuzz/artifacts/<target>/.
# A machine-readable summary, one JSON line per target (commit, executions, seconds, coverage,
# features, corpus files before and after, crashes), is appended to fuzz/results/campaigns.jsonl,
# which is committed: RELIABILITY.md's fuzzing figures are read from it.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-10000000}
MAX_TIME=${MAX_TIME:-3600}
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(authorization session_token claims keys webhook backend_api machine_answer handshake)
cargo +nightly fuzz build -O
bin=target/x86_64-unknown-linux-gnu/release
mkdir -p logs results
commit=$(git rev-parse --short HEAD)
for t in "${targets[@]}"; do
  before=$(ls corpus/"$t" | wc -l)
  work=$(mktemp -d)
  cp -r corpus/"$t"/. "$work"/
  mkdir -p artifacts/"$t"
  start=$(date +%s)
  "$bin/$t" "$work" -runs="$RUNS" -max_total_time="$MAX_TIME" -print_final_stats=1 \
    -artifact_prefix=artifacts/"$t"/ >logs/"$t".log 2>&1 || echo "$t: stopped ($?), see logs/$t.log"
  echo "$t: $(( $(date +%s) - start )) s, $(grep -E '^#[0-9]+' logs/"$t".log | tail -1)"
  # The run's own figures, before the merge below appends its lines to the log.
  secs=$(( $(date +%s) - start ))
  execs=$(grep -E '^stat::number_of_executed_units:' logs/"$t".log | tail -1 | awk '{print $2}')
  last=$(grep -E '^#[0-9]+.*cov: ' logs/"$t".log | tail -1)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  min=$(mktemp -d)
  "$bin/$t" -merge=1 "$min" "$work" >>logs/"$t".log 2>&1
  # The committed seeds (seed_*, from the test vectors) stay as they are, beside the minimised corpus.
  cp corpus/"$t"/seed_* "$min"/ 2>/dev/null || true
  rm -rf corpus/"$t" && mkdir -p corpus/"$t" && cp "$min"/* corpus/"$t"/
  rm -rf "$work" "$min"
  crashes=$(find artifacts/"$t" -type f | wc -l)
  printf '{"target":"%s","commit":"%s","date":"%s","runs_asked":%s,"executions":%s,"seconds":%s,"cov":%s,"ft":%s,"corpus_before":%s,"corpus_after":%s,"crashes":%s}\n' \
    "$t" "$commit" "$(date -u +%Y-%m-%dT%H:%MZ)" "$RUNS" "${execs:-0}" "$secs" "${cov:-0}" "${ft:-0}" \
    "$before" "$(ls corpus/"$t" | wc -l)" "$crashes" | tee -a results/campaigns.jsonl
done
