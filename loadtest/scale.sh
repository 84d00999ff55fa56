#!/usr/bin/env bash
# How cost grows with data (issue 17), on SQLite: the same reads measured on
# a fresh database and again once SCALE_REQUESTS requests (default
# 1,000,000, each with its events and its applicant email, the mail worker
# off so the outbox keeps them) were submitted with `sesame-loadtest seed`:
#   get               GetAccessRequest by name (over 200 new requests);
#   list              ListAccessRequests, first page of 20;
#   list pending      the same, state PENDING;
#   list applicant    the same, one applicant (the blind index);
# each for DURATION seconds (default 10), CONCURRENCY callers (16) over
# CONNECTIONS connections (4): p99 at scale against p99 when empty (goal:
# within 1.5x), and the database's size per request.
# Writes loadtest/results/scale.json and prints a summary table.
#
# Loopback only; every step is bounded. Builds the release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE_REQUESTS="${SCALE_REQUESTS:-1000000}"
DURATION="${DURATION:-10}"
CONCURRENCY="${CONCURRENCY:-16}"
CONNECTIONS="${CONNECTIONS:-4}"
PORT="${PORT:-50681}"

cargo build --release --locked --bin sesame --bin sesame-loadtest
SESAME="$PWD/target/release/sesame"
LOADTEST="$PWD/target/release/sesame-loadtest"
WORK="$(mktemp -d)"
R="$WORK/results"
mkdir -p "$R"
SERVER_PID=""
cleanup() {
  [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

echo "== sesame serve on a fresh SQLite database in $WORK (limits and mail worker off)"
(cd "$WORK" && exec env SESAME_LOG_FILTER=warn SESAME_MAIL_WORKER=false SESAME_RATE_LIMIT_PER_KEY=0 \
   SESAME_RATE_LIMIT_PER_PEER=0 "$SESAME" serve --listen "127.0.0.1:$PORT" >stdout.log 2>stderr.log) &
SERVER_PID=$!
KEY=""
for _ in $(seq 1 300); do
  KEY="$(grep -o "sesame_[A-Za-z0-9_-]*" "$WORK/stdout.log" 2>/dev/null | head -1 || true)"
  [ -n "$KEY" ] && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$KEY" ] || ! kill -0 "$SERVER_PID" 2>/dev/null; then
  cat "$WORK/stdout.log" "$WORK/stderr.log" >&2
  echo "sesame did not start" >&2
  exit 1
fi
lt() { "$LOADTEST" --target "http://127.0.0.1:$PORT" --api-key "$KEY" --json "$@"; }

reads() { # reads PHASE: the four reads, one JSON file each
  local phase="$1" name
  local -a reads=("get" "list --filter all" "list --filter pending" "list --filter applicant")
  for read in "${reads[@]}"; do
    name="${phase}_${read/ --filter /_}"
    echo "== $phase: $read, $CONCURRENCY callers over $CONNECTIONS connections, ${DURATION}s"
    # shellcheck disable=SC2086 # the scenario and its filter, word-split
    lt $read --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" \
      --duration "${DURATION}s" --server-pid "$SERVER_PID" >"$R/$name.json" 2>"$WORK/$name.log"
    python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print(f\"{sys.argv[2]}: {r['calls_per_s']:.0f}/s, p99 {r['latency']['p99_ms']:.2f} ms, errors {sum(r['errors'].values())}\")" \
      "$R/$name.json" "$name"
  done
}
reads empty

echo "== seeding $SCALE_REQUESTS requests (32 in flight over 4 connections; progress every 5 s)"
start=$(date +%s)
lt seed --count "$SCALE_REQUESTS" --concurrency 32 --connections 4 --quiet
seed_secs=$(( $(date +%s) - start ))
reads scale

size=$(du -cb "$WORK"/sesame.db* | tail -1 | cut -f1)
mkdir -p loadtest/results
python3 - "$R" loadtest/results/scale.json "$SCALE_REQUESTS" "$size" "$seed_secs" <<'PY'
import datetime, glob, json, os, sys

results, out, requests, size, seed_secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
r = {os.path.basename(p)[:-5]: json.load(open(p)) for p in glob.glob(os.path.join(results, "*.json"))}
rows = []
for read in ["get", "list_all", "list_pending", "list_applicant"]:
    empty, scale = r[f"empty_{read}"], r[f"scale_{read}"]
    errors = sum(empty["errors"].values()) + sum(scale["errors"].values())
    ratio = scale["latency"]["p99_ms"] / empty["latency"]["p99_ms"]
    rows.append({"read": read, "empty_p99_ms": empty["latency"]["p99_ms"], "scale_p99_ms": scale["latency"]["p99_ms"],
                 "empty_per_s": empty["calls_per_s"], "scale_per_s": scale["calls_per_s"], "ratio": ratio,
                 "errors": errors, "met": errors == 0 and ratio <= 1.5})
report = {
    "time_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
    "backend": "sqlite", "requests": requests, "seed_seconds": seed_secs,
    "database_bytes": size, "bytes_per_request": size / requests,
    "summary": rows, "raw": r,
}
with open(out, "w") as f:
    json.dump(report, f, indent=2)
    f.write("\n")
print(f"\nSQLite, {requests:,} requests seeded in {seed_secs} s; database {size / 2**20:,.0f} MiB, {size / requests:,.0f} bytes per request")
print(f"{'read':<16}{'p99 empty':>12}{'p99 at scale':>14}{'ratio':>8}  goal <= 1.5x")
for row in rows:
    print(f"{row['read']:<16}{row['empty_p99_ms']:>10.2f}ms{row['scale_p99_ms']:>12.2f}ms{row['ratio']:>7.2f}x  {'met' if row['met'] else 'MISSED'}")
print(f"written: {out}")
PY
