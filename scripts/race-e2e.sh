#!/usr/bin/env bash
# The end-to-end tests (cmd/medmesh) under the race detector: each test's
# daemons are the test binary re-executed, so they run under the detector
# too, and write any race report to a file of their own (GORACE log_path),
# which this script prints. internal/racesmoke covers the other packages
# under `go test ./...`; this one takes far longer (the e2e package is
# 5 minutes without the detector; 29 with it on two cores, session 15).
#
#   scripts/race-e2e.sh [TEST_REGEX]     e.g. scripts/race-e2e.sh 'TestScopesCLI|TestTrustCLI'
#
# Exit 0: no race report and the tests passed; 1: a race report (printed);
# otherwise go test's exit code.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/medmesh-race-e2e.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$root" || exit 2
echo "race-e2e: go test -race -run '${1:-.}' ./cmd/medmesh (reports under $dir)" >&2
GORACE="log_path=$dir/race" go test -race -count=1 -timeout 120m -run "${1:-.}" ./cmd/medmesh
rc=$?
shopt -s nullglob
reports=("$dir"/race.*)
if (( ${#reports[@]} > 0 )); then
  echo "race-e2e: ${#reports[@]} process(es) reported data races:" >&2
  cat "${reports[@]}" >&2
  exit 1
fi
echo "race-e2e: no race report (go test exit $rc)" >&2
exit $rc
