#!/usr/bin/env bash
# The baselines of docs/performance.md and our figures next to them, measured
# on this machine in this run, each printed as a ratio:
#   1. durable submit on PostgreSQL (synchronous_commit on) vs pgbench running
#      the same three inserts per transaction at the same concurrency;
#   2. durable submit on SQLite (WAL, synchronous=FULL) vs a minimal Rust loop
#      doing the same inserts, one transaction each;
#   3. GetAccessRequest vs a minimal tonic server (the health service), both
#      driven by h2load with the same connections and streams;
#   4. idle server memory.
# Email (loadtest/bench-mail.sh) and fan-out (loadtest/bench-watch.sh) have
# their own scripts. Loopback only; every step is bounded by DURATION.
# Needs: cargo, PostgreSQL's initdb/pg_ctl/pgbench, h2load (Debian package
# nghttp2-client, installed here when missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10}"
CONCURRENCY="${CONCURRENCY:-16}"
CONNECTIONS="${CONNECTIONS:-4}"
PGPORT="${PGPORT:-55432}"
PORT="${PORT:-50661}"
ECHO_PORT="${ECHO_PORT:-50662}"

if ! command -v h2load >/dev/null; then
  echo "installing h2load (nghttp2-client)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >/dev/null
fi
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
[ -x "$PGBIN/pgbench" ] || { echo "PostgreSQL (initdb, pg_ctl, pgbench) is needed" >&2; exit 1; }

cargo build --release --locked --bin sesame --bin sesame-loadtest
SESAME="$PWD/target/release/sesame"
LOADTEST="$PWD/target/release/sesame-loadtest"
OUT="$PWD/loadtest/results"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
chmod 755 "$WORK"
PIDS=()
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  as_postgres "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ratio() { python3 -c "print(f'{$1 / $2:.3f}')"; }
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

# Starts `sesame serve` with the given environment; sets KEY and SERVER_PID.
start_sesame() { # start_sesame DIR [VAR=VALUE...]
  local dir="$1"; shift
  mkdir -p "$dir"
  (cd "$dir" && exec env SESAME_LOG_FILTER=warn SESAME_MAIL_WORKER=false SESAME_RATE_LIMIT_PER_KEY=0 "$@" \
     "$SESAME" serve --listen "127.0.0.1:$PORT" >stdout.log 2>stderr.log) &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 1 200); do grep -q 'sesame_' "$dir/stdout.log" 2>/dev/null && break; sleep 0.1; done
  KEY="$(grep -o "sesame_[A-Za-z0-9_-]*" "$dir/stdout.log" | head -1 || true)"
  [ -n "$KEY" ] || { cat "$dir/stderr.log"; echo "sesame did not start" >&2; exit 1; }
  sleep 0.5
}
stop_sesame() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; }
submit_rate() { # the ok submits per second of an rpc run
  "$LOADTEST" --target "http://127.0.0.1:$PORT" --api-key "$KEY" --json rpc --kind submit \
    --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" --duration-secs "$DURATION" >"$WORK/rpc.json"
  python3 -c "import json; r = json.load(open('$WORK/rpc.json')); print(f\"{r['calls_per_s']:.0f} {r['latency']['p99_ms']:.2f} {sum(r['errors'].values())}\")"
}

echo "== PostgreSQL: throwaway cluster on port $PGPORT"
mkdir -p "$WORK/pg" && chown postgres "$WORK/pg" 2>/dev/null || true
as_postgres "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres >/dev/null
as_postgres "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/log" -w \
  -o "-h 127.0.0.1 -p $PGPORT -k $WORK/pg -c synchronous_commit=on -c fsync=on -c max_connections=200" start >/dev/null
psql_pg() { "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"; }
psql_pg -c "CREATE DATABASE bench" -c "CREATE DATABASE sesame"
psql_pg -d bench <<'SQL'
CREATE TABLE requests (id TEXT PRIMARY KEY, email TEXT, name TEXT, organization TEXT, resource TEXT,
  justification TEXT, state TEXT, version BIGINT, created_at_us BIGINT);
CREATE TABLE events (seq BIGSERIAL PRIMARY KEY, request TEXT, kind TEXT, actor TEXT, data TEXT,
  prev_hash TEXT, hash TEXT);
CREATE TABLE outbox (id TEXT PRIMARY KEY, request TEXT, template TEXT, recipient TEXT, data TEXT,
  state TEXT, next_attempt_at_us BIGINT);
SQL
cat >"$WORK/submit.sql" <<'SQL'
\set n random(1, 1000000000)
BEGIN;
INSERT INTO requests VALUES (gen_random_uuid()::text, 'ada' || :n || '@example.com', 'Ada Lovelace',
  'Analytical Engines', 'vpn-paris', 'Maintenance of the difference engine', 'pending', 1, :n);
INSERT INTO events (request, kind, actor, data, prev_hash, hash) VALUES (:n::text, 'request.submitted',
  'loadtest', '{"resource":"vpn-paris"}', repeat('0', 64), repeat('0', 64));
INSERT INTO outbox VALUES (gen_random_uuid()::text, :n::text, 'applicant_received',
  'ada' || :n || '@example.com', '{"full_name":"Ada Lovelace"}', 'pending', 0);
END;
SQL
echo "== baseline: pgbench, 3 inserts per transaction, $CONCURRENCY clients, ${DURATION}s"
pg_tps=$("$PGBIN/pgbench" -n -c "$CONCURRENCY" -j 2 -T "$DURATION" -f "$WORK/submit.sql" \
  -h 127.0.0.1 -p "$PGPORT" -U postgres bench 2>/dev/null | awk '/^tps =/ { print int($3); exit }')
echo "pgbench: $pg_tps tps"
openssl rand -base64 32 >"$WORK/secret.key"
start_sesame "$WORK/pg-sesame" SESAME_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/sesame" \
  SESAME_SECRET_KEY_FILE="$WORK/secret.key" SESAME_DATABASE_MAX_CONNECTIONS=$((CONCURRENCY + 4))
echo "== sesame: SubmitAccessRequest on PostgreSQL, $CONCURRENCY callers, ${DURATION}s"
read -r pg_submit pg_p99 pg_errors < <(submit_rate)
echo "sesame: $pg_submit submits/s (p99 ${pg_p99} ms, $pg_errors errors)"
stop_sesame

echo "== baseline: SQLite loop, 3 inserts per transaction (WAL, synchronous=FULL), ${DURATION}s"
sqlite_tps=$("$LOADTEST" sqlite-baseline --db "$WORK/loop.db" --duration-secs "$DURATION" |
  python3 -c "import json, sys; print(int(json.load(sys.stdin)['transactions_per_s']))")
echo "loop: $sqlite_tps tps"
start_sesame "$WORK/sqlite-sesame"
idle_rss=$(rss_kib "$SERVER_PID")
echo "== sesame: SubmitAccessRequest on SQLite, $CONCURRENCY callers, ${DURATION}s"
read -r sqlite_submit sqlite_p99 sqlite_errors < <(submit_rate)
echo "sesame: $sqlite_submit submits/s (p99 ${sqlite_p99} ms, $sqlite_errors errors)"

echo "== GetAccessRequest vs a minimal tonic server, h2load -c $CONNECTIONS -m $CONCURRENCY, ${DURATION}s each"
NAME="$("$LOADTEST" --target "http://127.0.0.1:$PORT" --api-key "$KEY" seed --count 1)"
python3 - "$NAME" "$WORK/get.bin" "$WORK/check.bin" <<'PY'
import struct, sys
name = sys.argv[1].encode()
message = b"\x0a" + bytes([len(name)]) + name  # GetAccessRequestRequest.name (len < 128)
open(sys.argv[2], "wb").write(b"\x00" + struct.pack(">I", len(message)) + message)
open(sys.argv[3], "wb").write(b"\x00\x00\x00\x00\x00")  # HealthCheckRequest {}
PY
grpc_headers=(-H 'content-type: application/grpc' -H 'te: trailers')
h2_rate() { awk '/^finished in/ { gsub(",", "", $4); print int($4); exit }'; }
get_rps=$(h2load -D "$DURATION" -c "$CONNECTIONS" -m "$CONCURRENCY" -t 1 "${grpc_headers[@]}" \
  -H "authorization: Bearer $KEY" -d "$WORK/get.bin" \
  "http://127.0.0.1:$PORT/sesame.v1.AccessRequestService/GetAccessRequest" | tee "$WORK/h2-get.txt" | h2_rate)
# h2load counts HTTP statuses and a gRPC error is an HTTP 200 too: the same
# gets through the real client count errors by gRPC code (must be none).
"$LOADTEST" --target "http://127.0.0.1:$PORT" --api-key "$KEY" --json rpc --kind get \
  --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" --duration-secs "$DURATION" >"$WORK/rpc-get.json"
read -r client_get client_get_errors < <(python3 -c "import json; r = json.load(open('$WORK/rpc-get.json')); print(f\"{r['calls_per_s']:.0f} {sum(r['errors'].values())}\")")
echo "h2load: $get_rps gets/s; sesame-loadtest client: $client_get gets/s, $client_get_errors errors"
[ "$client_get_errors" = 0 ] || { echo "GetAccessRequest failed under load" >&2; exit 1; }
loaded_rss=$(rss_kib "$SERVER_PID")
stop_sesame
"$LOADTEST" echo-server --listen "127.0.0.1:$ECHO_PORT" --duration-secs $((DURATION + 30)) &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
sleep 1
echo_rps=$(h2load -D "$DURATION" -c "$CONNECTIONS" -m "$CONCURRENCY" -t 1 "${grpc_headers[@]}" \
  -d "$WORK/check.bin" "http://127.0.0.1:$ECHO_PORT/grpc.health.v1.Health/Check" | tee "$WORK/h2-echo.txt" | h2_rate)
kill "$ECHO_PID" 2>/dev/null || true

printf '\n%-44s %12s %12s %8s %6s\n' "measure (same machine, same run)" "sesame" "baseline" "ratio" "goal"
printf '%-44s %12s %12s %8s %6s\n' "submit/s on PostgreSQL vs pgbench 3 inserts" "$pg_submit" "$pg_tps" "$(ratio "$pg_submit" "$pg_tps")" ">=1.0"
printf '%-44s %12s %12s %8s %6s\n' "submit/s on SQLite vs a Rust loop" "$sqlite_submit" "$sqlite_tps" "$(ratio "$sqlite_submit" "$sqlite_tps")" ">=2.0"
printf '%-44s %12s %12s %8s %6s\n' "GetAccessRequest/s vs tonic health (h2load)" "$get_rps" "$echo_rps" "$(ratio "$get_rps" "$echo_rps")" ">=0.5"
printf '%-44s %12s\n' "GetAccessRequest/s, sesame-loadtest client" "$client_get"
printf '%-44s %12s %12s\n' "server RSS idle / after load (KiB)" "$idle_rss" "$loaded_rss"
printf '{\n  "duration_s": %d,\n  "concurrency": %d,\n  "connections": %d,\n  "postgres": {"pgbench_tps": %d, "sesame_submit_per_s": %d, "sesame_p99_ms": %s, "errors": %d, "ratio": %s},\n  "sqlite": {"loop_tps": %d, "sesame_submit_per_s": %d, "sesame_p99_ms": %s, "errors": %d, "ratio": %s},\n  "get": {"echo_rps": %d, "sesame_get_rps": %d, "ratio": %s, "client_get_per_s": %d},\n  "rss_kib": {"idle": %d, "after_load": %d}\n}\n' \
  "$DURATION" "$CONCURRENCY" "$CONNECTIONS" \
  "$pg_tps" "$pg_submit" "$pg_p99" "$pg_errors" "$(ratio "$pg_submit" "$pg_tps")" \
  "$sqlite_tps" "$sqlite_submit" "$sqlite_p99" "$sqlite_errors" "$(ratio "$sqlite_submit" "$sqlite_tps")" \
  "$echo_rps" "$get_rps" "$(ratio "$get_rps" "$echo_rps")" "$client_get" "$idle_rss" "$loaded_rss" >"$OUT/baselines.json"
echo "written: loadtest/results/baselines.json"
