#!/usr/bin/env bash
# How cost grows with data (issue 17), on each of BACKENDS (default
# "sqlite postgres"; PostgreSQL in a throwaway cluster): the same reads
# measured on a fresh database and again once SCALE_REQUESTS requests
# (default 1,000,000, each for an applicant of its own and with an
# idempotency key, with its events and its applicant email, the mail worker
# off so the outbox keeps them) were submitted with `sesame-loadtest seed`:
#   get               GetAccessRequest by name (over 200 new requests);
#   list              ListAccessRequests, first page of 20;
#   list pending      the same, state PENDING;
#   list applicant    the same, one applicant (the blind index);
# each for DURATION seconds (default 10), CONCURRENCY callers (16) over
# CONNECTIONS connections (4): p99 at scale against p99 when empty (goal:
# within 1.5x). Then, at scale:
#   erase             EraseSubject of ERASE_SUBJECTS applicants (10,000),
#                     against the same at SMALL_REQUESTS (20,000) requests;
#   pages             every page of 500 of ListAccessRequests: the deepest
#                     tenth of the pages against the first tenth;
#   replay            WatchEvents from the first event to the head: events/s
#                     by tenth, the server's memory;
#   queries           the searches of erasure and of the retention job that
#                     must not read the whole table: plan and time, empty
#                     and at scale;
#   verify            VerifyAuditChain over the whole log against raw
#                     SHA-256 chaining of as many events (same machine, same
#                     run);
# and the database's size per request.
# Writes loadtest/results/scale.json and prints a summary table.
#
# Loopback only; every step is bounded. Builds the release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=loadtest/lib.sh
. loadtest/lib.sh
BACKENDS="${BACKENDS:-sqlite postgres}"
SCALE_REQUESTS="${SCALE_REQUESTS:-1000000}"
SMALL_REQUESTS="${SMALL_REQUESTS:-20000}"
ERASE_SUBJECTS="${ERASE_SUBJECTS:-10000}"
DURATION="${DURATION:-10}"
CONCURRENCY="${CONCURRENCY:-16}"
CONNECTIONS="${CONNECTIONS:-4}"
PORT="${PORT:-50681}"
PGPORT="${PGPORT:-55481}"
if [ "$SMALL_REQUESTS" -lt $((2 * ERASE_SUBJECTS)) ] || [ "$SCALE_REQUESTS" -lt $((SMALL_REQUESTS + ERASE_SUBJECTS)) ]; then
  echo "need SMALL_REQUESTS >= 2 x ERASE_SUBJECTS and SCALE_REQUESTS >= SMALL_REQUESTS + ERASE_SUBJECTS" >&2
  exit 2
fi

cargo build --release --locked --bin sesame --bin sesame-loadtest
SESAME="$PWD/target/release/sesame"
LOADTEST="$PWD/target/release/sesame-loadtest"
WORK="$(mktemp -d)"
chmod 755 "$WORK"
R="$WORK/results"
mkdir -p "$R"
SERVER_PID=""
PGBIN=""
cleanup() {
  [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
  stop_postgres immediate
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

lt() { "$LOADTEST" --target "http://127.0.0.1:$PORT" --api-key "$KEY" --json "$@"; }

reads() { # reads BACKEND PHASE: the four reads, one JSON file each
  local backend="$1" phase="$2" name
  local -a reads=("get" "list --filter all" "list --filter pending" "list --filter applicant")
  for read in "${reads[@]}"; do
    name="${backend}_${phase}_${read/ --filter /_}"
    echo "== $backend, $phase: $read, $CONCURRENCY callers over $CONNECTIONS connections, ${DURATION}s"
    # shellcheck disable=SC2086 # the scenario and its filter, word-split
    lt $read --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" \
      --duration "${DURATION}s" --server-pid "$SERVER_PID" >"$R/$name.json" 2>"$WORK/$name.log"
    field "$R/$name.json" "$name: {calls_per_s:.0f}/s, p99 {latency[p99_ms]:.2f} ms, errors {errors}"
  done
}

seed() { # seed FIRST_TAG COUNT: requests for applicants FIRST_TAG.. on
  echo "== seeding $2 requests from tag $1 (32 in flight over 4 connections; progress every 5 s)"
  lt seed --first-tag "$1" --count "$2" --concurrency 32 --connections 4 --quiet
}

erase() { # erase NAME FIRST_TAG: EraseSubject for ERASE_SUBJECTS applicants
  echo "== erasing $ERASE_SUBJECTS subjects from tag $2 (8 in flight)"
  lt erase --first-tag "$2" --count "$ERASE_SUBJECTS" --concurrency 8 --connections 2 >"$R/$1.json" 2>"$WORK/$1.log"
  field "$R/$1.json" "$1: {subjects_per_s:.0f} subjects/s, {erased_requests} requests erased, p99 {latency[p99_ms]:.2f} ms"
}

# The average bytes of an event's hashed canonical form (its fields and a
# length prefix and separators each), for the raw chaining baseline.
EVENT_BYTES_SQL="SELECT CAST(AVG(LENGTH(CAST(seq AS TEXT)) + LENGTH(event_type) + LENGTH(access_request_id)
  + LENGTH(actor) + LENGTH(state) + LENGTH(CAST(occurred_at_us AS TEXT)) + LENGTH(data)) AS INTEGER) + 7 * 4 FROM events"

# The queries of the steps that must not read the whole table, each with
# its plan and its best time of five (none finds anything, so each reads all
# it must to find nothing):
#   retention       the retention job's search for requests closed past
#                   their period (the default 365 days), once per batch of
#                   100 it erases;
#   retention_keys  whether a person still has a request holding data, once
#                   per person whose requests it erased;
#   erase_keys      the idempotency key of an erased request, once per
#                   request erased.
QUERIES=(retention retention_keys erase_keys)
declare -A QUERY=(
  [retention]="SELECT id FROM access_requests WHERE erased_at_us IS NULL AND state <> 'pending'
    AND decided_at_us <= $(( ($(date +%s) - 365 * 86400) * 1000000 )) LIMIT 100"
  [retention_keys]="SELECT id FROM access_requests WHERE subject_id = 'nobody' LIMIT 1"
  [erase_keys]="SELECT principal FROM idempotency_keys WHERE access_request_id = 'nothing'"
)
query_plans() { # query_plans BACKEND PHASE
  local name out
  for name in "${QUERIES[@]}"; do
    out="$R/$1_query_${name}_$2.json"
    if [ "$1" = postgres ]; then
      for run in 1 2 3 4 5; do
        psql_pg -d sesame -At -c "EXPLAIN (ANALYZE, FORMAT JSON) ${QUERY[$name]}" >"$WORK/plan.$run.json"
      done
      python3 -c "import json, sys
plans = [json.load(open(path))[0] for path in sys.argv[1:]]
def nodes(n): return [n['Node Type'] + (' on ' + n['Index Name'] if 'Index Name' in n else '')] + [x for c in n.get('Plans', []) for x in nodes(c)]
print(json.dumps({'ms': min(p['Execution Time'] for p in plans), 'plan': ' / '.join(nodes(plans[0]['Plan']))}))" "$WORK"/plan.*.json >"$out"
    else
      python3 -c "import json, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
plan = ' / '.join(row[-1] for row in db.execute('EXPLAIN QUERY PLAN ' + sys.argv[2]))
times = []
for _ in range(5):
    start = time.perf_counter(); db.execute(sys.argv[2]).fetchall(); times.append((time.perf_counter() - start) * 1000)
print(json.dumps({'ms': min(times), 'plan': plan}))" "$WORK/$1/sesame.db" "${QUERY[$name]}" >"$out"
    fi
    field "$out" "$name query ($2): {ms:.2f} ms, plan: {plan}"
  done
}

measure() { # measure BACKEND: every step on a fresh database of BACKEND
  local backend="$1" dir="$WORK/$1" size event_bytes
  local -a database=()
  mkdir -p "$dir"
  if [ "$backend" = postgres ]; then
    echo "== PostgreSQL: throwaway cluster on 127.0.0.1:$PGPORT"
    start_postgres "$WORK/pg" "$PGPORT" max_connections=100 shared_buffers=256MB
    psql_pg -c "CREATE DATABASE sesame"
    openssl rand -base64 32 >"$dir/secret.key"
    database=(SESAME_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/sesame"
      SESAME_SECRET_KEY_FILE="$dir/secret.key" SESAME_DATABASE_MAX_CONNECTIONS=24)
  fi
  echo "== sesame serve on a fresh $backend database in $dir (limits and mail worker off)"
  # A heartbeat 2 s after the last event ends the replay step.
  (cd "$dir" && exec env SESAME_LOG_FILTER=warn SESAME_MAIL_WORKER=false SESAME_RATE_LIMIT_PER_KEY=0 \
     SESAME_RATE_LIMIT_PER_PEER=0 SESAME_WATCH_HEARTBEAT_SECS=2 "${database[@]}" \
     "$SESAME" serve --listen "127.0.0.1:$PORT" >stdout.log 2>stderr.log) &
  SERVER_PID=$!
  wait_for_sesame "$dir" "$SERVER_PID" "$PORT" 300

  reads "$backend" empty
  query_plans "$backend" empty
  seed 0 "$SMALL_REQUESTS"
  erase "${backend}_erase_small" "$ERASE_SUBJECTS"
  local start
  start=$(date +%s)
  seed "$SMALL_REQUESTS" $((SCALE_REQUESTS - SMALL_REQUESTS))
  echo $(( $(date +%s) - start )) >"$WORK/${backend}_seed_seconds"
  reads "$backend" scale
  query_plans "$backend" scale
  erase "${backend}_erase_scale" "$SMALL_REQUESTS"
  echo "== walking every page of 500"
  lt pages --page-size 500 --limit 600s >"$R/${backend}_pages.json" 2>"$WORK/${backend}_pages.log"
  field "$R/${backend}_pages.json" "pages: {pages} pages, {rows} rows, {rows_per_s:.0f} rows/s; p99 first {first_pages[p99_ms]:.1f} ms, deep {deep_pages[p99_ms]:.1f} ms"
  echo "== replaying WatchEvents from the first event"
  lt replay --server-pid "$SERVER_PID" --limit 1200s >"$R/${backend}_replay.json" 2>"$WORK/${backend}_replay.log"
  field "$R/${backend}_replay.json" "replay: {events} events, {events_per_s:.0f}/s, by tenth {events_per_s_by_tenth}, out of order {out_of_order}, rss {server_rss_kib_start} -> max {server_rss_kib_max} KiB"
  if [ "$backend" = postgres ]; then
    event_bytes=$(psql_pg -d sesame -At -c "$EVENT_BYTES_SQL")
    size=$(psql_pg -d sesame -At -c "SELECT pg_database_size('sesame')")
  else
    event_bytes=$(python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" \
      "$dir/sesame.db" "$EVENT_BYTES_SQL")
    size=$(du -cb "$dir"/sesame.db* | tail -1 | cut -f1)
  fi
  echo "$size" >"$WORK/${backend}_size"
  echo "== verifying the audit chain over the whole log (events of $event_bytes bytes on average)"
  lt verify --event-bytes "$event_bytes" --limit 1200s >"$R/${backend}_verify.json" 2>"$WORK/${backend}_verify.log"
  field "$R/${backend}_verify.json" "verify: intact {intact}, {events} events, {events_per_s:.0f}/s, raw chaining {raw_chain_events_per_s:.0f}/s: {ratio_to_raw:.3f}x"
  kill "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  stop_postgres
}

for backend in $BACKENDS; do
  case "$backend" in sqlite | postgres) measure "$backend" ;; *) echo "unknown backend $backend" >&2; exit 2 ;; esac
done

mkdir -p loadtest/results
python3 - "$R" "$WORK" loadtest/results/scale.json "$SCALE_REQUESTS" "$SMALL_REQUESTS" "$BACKENDS" <<'PY'
import datetime, glob, json, os, sys

results, work, out = sys.argv[1], sys.argv[2], sys.argv[3]
requests, small, backends = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6].split()
r = {os.path.basename(p)[:-5]: json.load(open(p)) for p in glob.glob(os.path.join(results, "*.json"))}
read_file = lambda name: int(open(os.path.join(work, name)).read())
report = {
    "time_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
    "requests": requests, "small_requests": small, "backends": {}, "raw": r,
}
for b in backends:
    rows = []
    for read in ["get", "list_all", "list_pending", "list_applicant"]:
        empty, scale = r[f"{b}_empty_{read}"], r[f"{b}_scale_{read}"]
        errors = sum(empty["errors"].values()) + sum(scale["errors"].values())
        ratio = scale["latency"]["p99_ms"] / empty["latency"]["p99_ms"]
        rows.append({"read": read, "empty_p99_ms": empty["latency"]["p99_ms"], "scale_p99_ms": scale["latency"]["p99_ms"],
                     "empty_per_s": empty["calls_per_s"], "scale_per_s": scale["calls_per_s"], "ratio": ratio,
                     "errors": errors, "met": errors == 0 and ratio <= 1.5})
    pages, replay, verify = r[f"{b}_pages"], r[f"{b}_replay"], r[f"{b}_verify"]
    small_erase, scale_erase = r[f"{b}_erase_small"], r[f"{b}_erase_scale"]
    tenths = replay["events_per_s_by_tenth"]
    queries = {q: {"empty_ms": r[f"{b}_query_{q}_empty"]["ms"], "scale_ms": r[f"{b}_query_{q}_scale"]["ms"],
                   "plan": r[f"{b}_query_{q}_scale"]["plan"]} for q in ["retention", "retention_keys", "erase_keys"]}
    size = read_file(f"{b}_size")
    report["backends"][b] = {
        "seed_seconds": read_file(f"{b}_seed_seconds"),
        "database_bytes": size, "bytes_per_request": size / requests, "reads": rows,
        "pages": {"pages": pages["pages"], "reached_end": pages["reached_end"], "first_p99_ms": pages["first_pages"]["p99_ms"],
                  "deep_p99_ms": pages["deep_pages"]["p99_ms"], "ratio": pages["deep_over_first_p99"],
                  "met": pages["reached_end"] and pages["deep_over_first_p99"] <= 1.5},
        "queries": queries,
        "erase": {"small_per_s": small_erase["subjects_per_s"], "scale_per_s": scale_erase["subjects_per_s"],
                  "ratio": scale_erase["subjects_per_s"] / small_erase["subjects_per_s"],
                  "erased_requests": small_erase["erased_requests"] + scale_erase["erased_requests"]},
        "replay": {"events": replay["events"], "events_per_s": replay["events_per_s"], "out_of_order": replay["out_of_order"],
                   "last_over_first_tenth": tenths[-1] / tenths[0] if tenths else None,
                   "rss_kib_start": replay["server_rss_kib_start"], "rss_kib_max": replay["server_rss_kib_max"]},
        "verify": {"intact": verify["intact"], "events": verify["events"], "events_per_s": verify["events_per_s"],
                   "raw_per_s": verify["raw_chain_events_per_s"], "ratio_to_raw": verify["ratio_to_raw"],
                   "last_over_first_call": verify["last_call_events_per_s"] / verify["first_call_events_per_s"]},
    }
with open(out, "w") as f:
    json.dump(report, f, indent=2)
    f.write("\n")
for b, m in report["backends"].items():
    print(f"\n{b}, {requests:,} requests ({m['seed_seconds']} s to seed); database {m['database_bytes'] / 2**20:,.0f} MiB, "
          f"{m['bytes_per_request']:,.0f} bytes per request")
    print(f"{'read':<16}{'p99 empty':>12}{'p99 at scale':>14}{'ratio':>8}  goal <= 1.5x")
    for row in m["reads"]:
        print(f"{row['read']:<16}{row['empty_p99_ms']:>10.2f}ms{row['scale_p99_ms']:>12.2f}ms{row['ratio']:>7.2f}x  {'met' if row['met'] else 'MISSED'}")
    p = m["pages"]
    print(f"{'deep page':<16}{p['first_p99_ms']:>10.2f}ms{p['deep_p99_ms']:>12.2f}ms{p['ratio']:>7.2f}x  "
          f"{'met' if p['met'] else 'MISSED'} ({p['pages']} pages of 500, first tenth against last)")
    e = m["erase"]
    print(f"erase: {e['small_per_s']:.0f} subjects/s at {small:,} requests, {e['scale_per_s']:.0f}/s at scale ({e['ratio']:.2f}x)")
    for name, q in m["queries"].items():
        print(f"{name} query: {q['empty_ms']:.2f} ms empty, {q['scale_ms']:.2f} ms at scale; plan: {q['plan']}")
    x = m["replay"]
    print(f"replay: {x['events']:,} events at {x['events_per_s']:,.0f}/s, last tenth {x['last_over_first_tenth']:.2f}x the first, "
          f"out of order {x['out_of_order']}, server RSS {x['rss_kib_start']} -> at most {x['rss_kib_max']} KiB")
    v = m["verify"]
    print(f"verify: intact {v['intact']}, {v['events']:,} events at {v['events_per_s']:,.0f}/s; raw SHA-256 chaining "
          f"{v['raw_per_s']:,.0f}/s: {v['ratio_to_raw']:.3f}x; last call {v['last_over_first_call']:.2f}x the first")
print(f"written: {out}")
PY
