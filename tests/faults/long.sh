#!/usr/bin/env bash
# The long mode of the fault tests (issue 8), run by hand; CI runs the same tests short.
#
#   tests/faults/long.sh [AGENT_RUNS] [HUB_ROUNDS]
#
# AGENT_RUNS (default 60): runs of the agent test, two SIGKILLs each (one during
#   `lgwan-agent import`, one during `lgwan-agent run`'s upload), one growing hub; 0 skips it.
# HUB_ROUNDS (default 8): rounds of the hub test per database, each with its own seed and up
#   to 6 SIGKILLs during ingest and 6 during key-grant upload. PostgreSQL rounds run when
#   RENKEI_TEST_PG_URL is set (as .ci/run sets it), and are skipped with a note otherwise.
# Then the disk-full test (needs root for the tmpfs) and the bad-input test, once each.
#
# RENKEI_FAULT_SEED fixes the first seed (default: the current time, printed); a failing run
# is replayed with its seed. Logs and the summary go to target/faults-long/.
set -euo pipefail
cd "$(dirname "$0")/../.."

agent_runs=${1:-60}
hub_rounds=${2:-8}
seed=${RENKEI_FAULT_SEED:-$(date +%s)}
out=${CARGO_TARGET_DIR:-target}/faults-long
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
started=$(date +%s)

# The tests run the binaries from the target folder: build them first.
cargo build -q -p internet-hub -p lgwan-agent -p renkei-client --bins
cargo test -q -p renkei-e2e --test it --no-run
cargo test -q -p lgwan-agent --test it --no-run

failed=0
run() { # name, log, command... (a failure is reported and the next test runs)
  local name=$1 log=$2
  shift 2
  echo "== $name (log: $log)"
  if ! "$@" >"$log" 2>&1; then
    failed=$((failed + 1))
    echo "FAILED: $name; see $log" | tee -a "$summary"
    grep -h -A3 'panicked at' "$log" | head -n 12 | tee -a "$summary" || true
  fi
  grep -ho 'FAULTS.*\|NOTE.*' "$log" | tee -a "$summary" || true
}

if [ "$agent_runs" -gt 0 ]; then
  RENKEI_FAULT_SEED=$seed RENKEI_FAULT_AGENT_RUNS=$agent_runs \
    run "agent SIGKILL, $agent_runs runs, seed $seed" "$out/agent.log" \
    cargo test -q -p renkei-e2e --test it faults::agent_kill -- --nocapture
fi

for i in $(seq 1 "$hub_rounds"); do
  s=$((seed + i))
  RENKEI_FAULT_SEED=$s RENKEI_FAULT_HUB_KILLS=6 \
    run "hub SIGKILL round $i/$hub_rounds, seed $s" "$out/hub-$i.log" \
    cargo test -q -p renkei-e2e --test it faults::hub_kill -- --nocapture --test-threads 1
done

run "disk full" "$out/disk-full.log" \
  cargo test -q -p lgwan-agent --test it disk_full -- --nocapture
run "bad input" "$out/bad-input.log" \
  cargo test -q -p renkei-e2e --test it faults::bad_input -- --nocapture

# Totals over the FAULTS lines of the tests that passed (a test fails on any lost or doubled
# record, so each FAULTS line stands for data lost: 0).
python3 - "$summary" "$(($(date +%s) - started))" <<'PY' | tee -a "$summary"
import re, sys
text = open(sys.argv[1]).read()
kills = mid = records = grants = 0
for m in re.finditer(r"FAULTS agent: .*?(\d+) SIGKILLs \((\d+) mid-import, (\d+) mid-upload\), (\d+) records", text):
    kills += int(m[1]); mid += int(m[2]) + int(m[3]); records += int(m[4])
hubs = 0
for m in re.finditer(r"FAULTS hub .*?(\d+) SIGKILLs during ingest \((\d+) mid-ingest\), (\d+) during "
                     r"key-grant upload \((\d+) mid-upload\).*?; (\d+) records and (\d+) key grants", text):
    hubs += 1
    kills += int(m[1]) + int(m[3]); mid += int(m[2]) + int(m[4])
    records += int(m[5]); grants += int(m[6])
print(f"TOTAL: {kills} SIGKILLs ({mid} with work under way) over 1 agent test and {hubs} hub "
      f"rounds; {records} records and {grants} key grants checked; data lost: 0; "
      f"duplicates: 0; {sys.argv[2]} s")
PY
[ "$failed" -eq 0 ] || { echo "$failed fault test(s) failed; see $summary"; exit 1; }
