#!/usr/bin/env bash
# Fuzzes the participant API from its checked-in OpenAPI document with schemathesis:
# a populated hub (the demo, kept), then a bounded number of generated requests as a
# PHR app and as a source over real mTLS. Any 5xx fails the run, and so does an answer
# that does not match the document (response_schema_conformance).
#   tests/schemathesis/run.sh [max-examples-per-operation]   (needs: pip install schemathesis)
set -euo pipefail
cd "$(dirname "$0")/../.."
examples="${1:-15}"
bin="${CARGO_TARGET_DIR:-target}/debug/internet-hub"
[ -x "$bin" ] || cargo build -q -p internet-hub
work=$(mktemp -d)
trap 'kill "${hub_pid:-0}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" demo --keep "$work/demo" > "$work/demo.log"
"$bin" serve --config "$work/demo/hub.toml" 2> "$work/hub.log" &
hub_pid=$!
port=$(sed -n 's/^participant = "127.0.0.1:\([0-9]*\)"/\1/p' "$work/demo/hub.toml")
admin=$(sed -n 's/^admin = "\(127.0.0.1:[0-9]*\)"/\1/p' "$work/demo/hub.toml")
for _ in $(seq 1 50); do
  curl -sf "http://$admin/readyz" >/dev/null && break
  sleep 0.2
done
curl -sf "http://$admin/readyz" >/dev/null

status=0
for who in phr-asmile agent; do
  case "$who" in
    phr-asmile) cert="$work/demo/phr-asmile/tls/phr-asmile.pem"; key="$work/demo/phr-asmile/tls/phr-asmile.key" ;;
    agent) cert="$work/demo/agent/tls/source-city-a.pem"; key="$work/demo/agent/tls/source-city-a.key" ;;
  esac
  echo "schemathesis as $who"
  st run hub/src/api/openapi.json \
    --url "https://localhost:$port" \
    --tls-verify "$work/demo/pki/ca.pem" \
    --request-cert "$cert" --request-cert-key "$key" \
    --checks not_a_server_error,response_schema_conformance \
    --phases coverage,fuzzing \
    --max-examples "$examples" --seed 2026 --workers 2 \
    --generation-database none > "$work/st-$who.log" 2>&1 || true
  grep -E "generated|passed|failed" "$work/st-$who.log" | tail -3
  # A failed check (a 5xx) fails the run. Schemathesis' own internal errors (hypothesis
  # flakiness while it derives examples) are reported but are not the hub's.
  if grep -qE "^=+ FAILURES =+|[0-9]+ failed" "$work/st-$who.log"; then
    sed -n '/FAILURES/,$p' "$work/st-$who.log" | head -80
    status=1
  fi
done
if grep -q "internal error" "$work/hub.log"; then
  echo "the hub logged internal errors:"; grep "internal error" "$work/hub.log" | head -20
  status=1
fi
exit "$status"
