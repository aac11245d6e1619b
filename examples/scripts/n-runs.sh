#!/usr/bin/env bash
# Runs test binaries N times and writes a machine-readable summary: the evidence behind "N/N
# runs" in RELIABILITY.md. Builds once (cargo test --no-run), then runs each binary directly,
# so a run costs test time only.
#
# Usage: examples/scripts/n-runs.sh [N] [test-target ...]
#   N defaults to 20; the targets default to the timing-sensitive suites of tests/tests/
#   (security, machine, handshake, replicas, pg_roles). Output: examples/results/n-runs.txt
#   (appended: one block per invocation, each run's pass/fail, then a `summary:` line with the
#   commit, the runs and the passes).
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(security machine handshake replicas pg_roles)
out=examples/results/n-runs.txt
args=()
for t in "${targets[@]}"; do args+=(--test "$t"); done
bins=$(cargo test -p clerk-actix-tests --all-features "${args[@]}" --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])')
commit=$(git rev-parse --short HEAD)
dirty=$(git status --porcelain | grep -qv '^??' && echo " (with uncommitted changes)" || true)
{
  echo
  echo "\$ examples/scripts/n-runs.sh $n ${targets[*]}   # $(date -u +%Y-%m-%dT%H:%MZ), commit ${commit}${dirty}, load: $(cut -d' ' -f1-3 /proc/loadavg)"
} >>"$out"
passes=0
for i in $(seq 1 "$n"); do
  ok=1
  failed=()
  while read -r name bin; do
    if ! (cd tests && "$bin" >/tmp/n-runs-"$name".log 2>&1); then
      ok=0
      failed+=("$name")
      # Keep the failure's lines for the record.
      grep -E "^test .* FAILED|panicked at" /tmp/n-runs-"$name".log | head -5 | sed 's/^/    /' >>"$out"
    fi
  done <<<"$bins"
  if [ "$ok" -eq 1 ]; then
    passes=$((passes + 1))
    echo "run $i: pass" >>"$out"
  else
    echo "run $i: FAIL (${failed[*]})" >>"$out"
  fi
done
echo "summary: commit=${commit} targets=${targets[*]} runs=${n} passes=${passes}" | tee -a "$out"
[ "$passes" -eq "$n" ]
