#!/usr/bin/env bash
# Renkei benchmarks, each figure next to its reference in the same run (see docs/benchmarks.md).
#
#   bench/run.sh            full run: 100,000-person archives (1,000,000 for the RSS check),
#                           200,000 hub records, 30 s load phases
#   bench/run.sh --quick    the same, smaller: 10,000 persons (100,000 for the RSS check),
#                           20,000 records, 8 s load phases; under ten minutes after the build
#
# Prints the table and writes target/bench-report.json. Nothing fails on a missed target.
# Needs: nginx (Debian's package), python3-lxml, python3-cryptography, python3-lz4, openssl, and PostgreSQL
# at $RENKEI_BENCH_PG (default postgres://postgres@127.0.0.1:5432/postgres), where it creates
# and drops a database of its own. Missing Debian packages are installed when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
case "${1:-}" in
  --quick) mode=quick ;;
  "") ;;
  *) echo "usage: bench/run.sh [--quick]" >&2; exit 2 ;;
esac
if [ "$mode" = quick ]; then
  persons=10000 records=20000 seconds=8 crypto_seconds=2 revoke_subjects=300
else
  persons=100000 records=200000 seconds=30 crypto_seconds=3 revoke_subjects=1000
fi
pg_url="${RENKEI_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
python=/usr/bin/python3 # Debian's interpreter, with Debian's lxml and cryptography

need=()
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
"$python" -c 'import lxml' 2>/dev/null || need+=(python3-lxml)
"$python" -c 'import cryptography' 2>/dev/null || need+=(python3-cryptography)
"$python" -c 'import lz4.block' 2>/dev/null || need+=(python3-lz4)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "bench/run.sh: install ${need[*]} first" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! pg_isready -q -d "$pg_url" 2>/dev/null && command -v pg_ctlcluster >/dev/null; then
  cluster=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$cluster" main start || true
  for _ in $(seq 1 30); do pg_isready -q -d "$pg_url" && break; sleep 1; done
fi
pg_isready -d "$pg_url"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# The idle-memory phase holds 10,000 connections (each process, hub and client, needs a
# descriptor per connection); fewer where the descriptor limit is lower.
idle=10000
[ "$(ulimit -n)" -ge 10500 ] || idle=$(( $(ulimit -n) - 500 ))

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p internet-hub -p renkei-bench
bin="$CARGO_TARGET_DIR/release"

work=$(mktemp -d "${TMPDIR:-/tmp}/renkei-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
parts="$work/parts"
mkdir -p "$parts"
started=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - started )) s, load $(cut -d' ' -f1-3 /proc/loadavg))" >&2; }

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cat > "$parts/00-meta.json" <<JSON
{"mode": "$mode", "date_utc": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "nproc": $(nproc),
 "cpu": "$cpu", "loadavg_at_start": "$(cut -d' ' -f1-3 /proc/loadavg)",
 "rustc": "$(rustc --version)", "openssl": "$(openssl version)", "nginx": "$(/usr/sbin/nginx -v 2>&1 | cut -d/ -f2)"}
JSON

step "agent: synthetic archives of $persons and $((persons * 10)) persons"
"$bin/bench-agent" synth --persons "$persons" --out "$work/small.zip"
step "agent import, $persons persons"
"$bin/bench-agent" import --archive "$work/small.zip" --dir "$work/agent-1x" --part "$parts/10-agent.json" --name agent
rm -rf "$work/agent-1x"
step "python reference pipeline, $persons persons"
"$python" bench/reference_pipeline.py "$work/small.zip" "$work/python" policies/catalog.toml > "$parts/11-python.json"
rm -rf "$work/python" "$work/small.zip"
# The agent takes at most 500,000 entries an archive: 10x input comes in parts of at most
# 250,000 persons (other persons, another sender), imported in one run.
large=$((persons * 10)) chunk=250000 large_args=() k=1
while [ "$large" -gt 0 ]; do
  n=$(( large < chunk ? large : chunk ))
  "$bin/bench-agent" synth --persons "$n" --part "$k" --out "$work/large-$k.zip"
  large_args+=(--archive "$work/large-$k.zip")
  large=$((large - n)) k=$((k + 1))
done
step "agent import, $((persons * 10)) persons (memory at 10x input)"
"$bin/bench-agent" import "${large_args[@]}" --dir "$work/agent-10x" --part "$parts/12-agent-10x.json" --name agent_10x
rm -rf "$work/agent-10x" "$work"/large-*.zip

step "crypto stages against openssl speed"
"$bin/bench-crypto" --seconds "$crypto_seconds" --part "$parts/20-crypto.json"

step "hub: ingest, drain, reads and handshakes against nginx, idle memory, revocation"
"$bin/bench-hub" --hub-bin "$bin/internet-hub" --pg "$pg_url" --records "$records" \
  --seconds "$seconds" --revoke-subjects "$revoke_subjects" --idle "$idle" --part "$parts/30-hub.json"

step "report"
echo "{\"total_seconds\": $(( $(date +%s) - started ))}" > "$parts/90-end.json"
"$bin/bench-report" --parts "$parts" --out "$CARGO_TARGET_DIR/bench-report.json"
