#!/usr/bin/env bash
# Runs the Go client's checks against the real server binary:
# $SESAME_BIN, default ../../target/debug/sesame (relative to clients/go).
# Installs the pinned code generators into clients/go/.bin (used by the
# generated-code test and by the root buf.gen.yaml), then `go vet ./...` and
# `go test -count=1 ./...` with the modules pinned in go.sum. Needs: go (the
# version of go.mod's `go` line or newer) and, for the generated-code test,
# npx (Node.js). Extra arguments go to `go test`, e.g. -run Watch.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

bin=${SESAME_BIN:-../../target/debug/sesame}
bin=$(realpath -m -- "$bin")
if [[ ! -x "$bin" ]]; then
  echo "test.sh: sesame server binary not found at $bin" >&2
  echo "test.sh: build it with 'cargo build --bin sesame' at the repository root, or set SESAME_BIN" >&2
  exit 1
fi
export SESAME_BIN=$bin

# A modest build on a shared machine; outside any go.work of a parent folder.
[[ " ${GOFLAGS:-} " == *" -p="* ]] || export GOFLAGS="${GOFLAGS:-} -p=1"
export GOWORK=off

go version
tools/install-plugins.sh
go vet ./...

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
go test -count=1 -v "$@" ./... 2>&1 | tee "$log" || status=$?
passed=$(grep -c -- '^--- PASS' "$log" || true)
failed=$(grep -c -- '^--- FAIL' "$log" || true)
skipped=$(grep -c -- '^--- SKIP' "$log" || true)
echo "go client: $passed passed, $failed failed, $skipped skipped"
if [[ $status -ne 0 ]]; then
  exit "$status"
fi
if [[ $skipped -ne 0 || $passed -eq 0 ]]; then
  echo "test.sh: nothing may be skipped, and something must pass" >&2
  exit 1
fi
