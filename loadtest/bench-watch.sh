#!/usr/bin/env bash
# The event fan-out benchmarks of docs/performance.md: builds release
# binaries, starts `sesame serve` (embedded SQLite) on loopback, and runs the
# watch and idle scenarios. Results go to loadtest/results/ as JSON.
# Bounded: each scenario stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --bin sesame --bin sesame-loadtest
SESAME="$PWD/target/release/sesame"
LOADTEST="$PWD/target/release/sesame-loadtest"
OUT="$PWD/loadtest/results"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
PORT="${PORT:-50651}"
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

ulimit -n 65536 2>/dev/null || true
cd "$WORK"
# The load generator is one key: its calls are not to be rate limited.
SESAME_RATE_LIMIT_PER_KEY=0 "$SESAME" serve --listen "127.0.0.1:$PORT" >stdout.log 2>stderr.log &
PID=$!
for _ in $(seq 1 100); do grep -q "sesame listening" stderr.log && break; sleep 0.1; done
KEY="$(grep -o 'sesame_[A-Za-z0-9_-]*' stdout.log | head -1)"
[ -n "$KEY" ] || { cat stderr.log; echo "no bootstrap key" >&2; exit 1; }
export SESAME_LOADTEST_API_KEY="$KEY"
TARGET="http://127.0.0.1:$PORT"

echo "== idle: 0 -> 10000 watchers"
"$LOADTEST" --target "$TARGET" --json idle --watchers 10000 --connections 100 --server-pid "$PID" | tee "$OUT/watch-idle-10000.json"
for watchers in 100 1000; do
  echo "== watch: $watchers watchers at 500 submits/s for 10 s"
  "$LOADTEST" --target "$TARGET" --json watch --watchers "$watchers" --connections 10 --rate 500 \
    --duration-secs 10 --server-pid "$PID" | tee "$OUT/watch-$watchers.json"
done
