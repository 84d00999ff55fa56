#!/usr/bin/env bash
# The email throughput benchmark of docs/performance.md. Needs Postfix's
# smtp-sink and smtp-source (Debian package `postfix`). On loopback:
#   1. baseline: smtp-source -s 10 -l 2048 -m N into smtp-sink;
#   2. sesame: N requests submitted with the worker off (N applicant emails
#      queued), then `sesame worker` drains them into the same sink.
# The sink's message count must equal the emails sent. Bounded: N messages.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-5000}"
SINK_PORT="${SINK_PORT:-2601}"
PORT="${PORT:-50652}"
command -v /usr/sbin/smtp-sink >/dev/null || { echo "install postfix for smtp-sink/smtp-source" >&2; exit 1; }

cargo build --release --locked --bin sesame --bin sesame-loadtest
SESAME="$PWD/target/release/sesame"
LOADTEST="$PWD/target/release/sesame-loadtest"
OUT="$PWD/loadtest/results"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
cd "$WORK"

sink_count() { tail -c 200 sink.out | tr '\r' '\n' | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2; }

/usr/sbin/smtp-sink -c -u postfix "127.0.0.1:$SINK_PORT" 512 >sink.out 2>&1 &
PIDS+=($!)
sleep 0.5

echo "== baseline: smtp-source -s 10 -l 2048 -m $N"
start=$(date +%s.%N)
/usr/sbin/smtp-source -s 10 -l 2048 -m "$N" -f bench@example.com -t sink@example.com "127.0.0.1:$SINK_PORT"
end=$(date +%s.%N)
raw_seconds=$(echo "$end - $start" | bc -l)
sleep 0.3
after_raw=$(sink_count)

export SESAME_MAIL_WORKER=false
export SESAME_MAIL_TRANSPORT="smtp://127.0.0.1:$SINK_PORT"
export SESAME_LOG_FILTER=warn
# The load generator is one key: its calls are not to be rate limited.
export SESAME_RATE_LIMIT_PER_KEY=0
"$SESAME" serve --listen "127.0.0.1:$PORT" >serve.out 2>serve.err &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q 'sesame_' serve.out 2>/dev/null && break; sleep 0.1; done
KEY="$(grep -o 'sesame_[A-Za-z0-9_-]*' serve.out | head -1)"
export SESAME_LOADTEST_API_KEY="$KEY"
TARGET="http://127.0.0.1:$PORT"
sleep 0.5

echo "== sesame: enqueue $N emails (worker off)"
"$LOADTEST" --target "$TARGET" mail-enqueue --requests "$N" --concurrency 32
echo "== sesame: drain with sesame worker"
unset SESAME_MAIL_WORKER
"$SESAME" worker >worker.out 2>worker.err &
PIDS+=($!)
drain=$("$LOADTEST" --target "$TARGET" mail-drain --emails "$N" --timeout-secs 600)
echo "$drain"
sleep 0.3
after_sesame=$(sink_count)
delivered=$((after_sesame - after_raw))
sesame_rate=$(echo "$drain" | grep -o '"emails_per_s": [0-9.]*' | cut -d' ' -f2)
raw_rate=$(echo "$N / $raw_seconds" | bc -l)
ratio=$(echo "$sesame_rate / $raw_rate" | bc -l)
printf '{\n  "emails": %d,\n  "raw_smtp_source_per_s": %.0f,\n  "sesame_per_s": %.0f,\n  "ratio_to_raw": %.3f,\n  "sink_received_from_sesame": %d\n}\n' \
  "$N" "$raw_rate" "$sesame_rate" "$ratio" "$delivered" | tee "$OUT/mail-$N.json"
[ "$delivered" -eq "$N" ] || { echo "sink received $delivered, expected $N" >&2; exit 1; }
