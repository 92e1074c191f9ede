#!/usr/bin/env bash
# The FHIR and UCUM check (issue 15): validate the record samples in SAMPLES_DIR (as the
# `fhir_samples` test of lgwan-agent writes them when RENKEI_FHIR_SAMPLES is set) with
# the pinned npm validators. Without SAMPLES_DIR, first make the samples in a temp dir.
#   bash tests/fhir/run.sh [SAMPLES_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The validators, exactly as package-lock.json pins them, into the git-ignored node_modules/.
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
samples="${1:-}"
if [ -z "$samples" ]; then
  samples="$(mktemp -d)"
  trap 'rm -rf "$samples"' EXIT
  (cd "$here/../.." && RENKEI_FHIR_SAMPLES="$samples" \
    cargo test -q -p lgwan-agent --test it fhir_samples)
fi
node "$here/check.mjs" "$samples"
