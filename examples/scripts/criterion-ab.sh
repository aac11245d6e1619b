#!/usr/bin/env bash
# Criterion A/B of the warm path: this checkout against an earlier commit, one after the other,
# each pinned to core 1 (`taskset`), with this checkout's benches/auth.rs copied into the
# earlier tree (so both run the same benchmarks). Appends to
# examples/results/criterion-warm-path.txt.
#
#   examples/scripts/criterion-ab.sh <before-commit> ['criterion filter']
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
before=${1:?usage: criterion-ab.sh <before-commit> [filter]}
filter=${2:-clerk/authenticate_cached_token|request/}
out=examples/results/criterion-warm-path.txt
tree=$(mktemp -d)
trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || true' EXIT
git worktree add -q --detach "$tree" "$before"
cp clerk-actix/benches/auth.rs "$tree/clerk-actix/benches/auth.rs"
run() {
  taskset -c 1 cargo bench -q -p clerk-actix --bench auth -- "$filter" 2>&1 \
    | grep -E "time:|^[a-z_/0-9]+ *$"
}
{
  echo
  echo "# $(date -u +%F) cargo bench -p clerk-actix --bench auth -- '$filter' (examples/scripts/criterion-ab.sh $before), pinned to core 1"
  echo "## after: $(git describe --always --dirty), load $(cut -d' ' -f1-3 /proc/loadavg)"
  run
  echo "## before: $before with the benches copied in, load $(cut -d' ' -f1-3 /proc/loadavg)"
  # The same target directory: dependencies are shared, the earlier tree's crates built apart.
  (cd "$tree" && CARGO_TARGET_DIR="$root/target" run)
} | tee -a "$out"
