#!/usr/bin/env bash
# The instruction budget (issue 17): the release server runs under valgrind's
# callgrind, and this counts the instructions it executes per operation:
#   submit    SubmitAccessRequest on SQLite (synchronous=FULL), closed loop;
#   get       GetAccessRequest by name (the 200 submits that seed it are
#             taken off, at the submit figure);
#   delivery  one event delivered to one watcher (50 watchers, submits at
#             10/s; the submits' own instructions, at the submit figure,
#             are taken off).
# Instructions, not time: the count is the same on a busy shared machine,
# so a change that makes an operation 10 % more expensive is seen.
# Each figure is compared with loadtest/instruction-budget.json; the run
# fails when one exceeds its budget by more than 10 %. `--update` writes the
# figures measured as the new budget (commit it with the change that
# explains it).
#
# Loopback only; every phase is bounded (PHASE_SECS of load, default 20).
# Needs valgrind (Debian package; installed when missing) and builds the
# release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=loadtest/lib.sh
. loadtest/lib.sh
PHASE_SECS="${PHASE_SECS:-20}"
PORT="${PORT:-50671}"
BUDGET=loadtest/instruction-budget.json
TOLERANCE=1.10
update=""
[ "${1:-}" = "--update" ] && update=1

if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
  echo "== installing valgrind"
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
valgrind --version

echo "== building the release binaries"
cargo build --release --locked --bin sesame --bin sesame-loadtest
SESAME="$PWD/target/release/sesame"
LOADTEST="$PWD/target/release/sesame-loadtest"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Background work is kept out of the counts: no worker, no scheduler, the
# safety polls and the database probe a minute apart.
echo "== starting sesame under callgrind (it runs about 50x slower there)"
(cd "$WORK" && exec env SESAME_LOG_FILTER=warn SESAME_MAIL_WORKER=false SESAME_SCHEDULER=false \
   SESAME_RATE_LIMIT_PER_KEY=0 SESAME_RATE_LIMIT_PER_PEER=0 SESAME_HEALTH_CHECK_INTERVAL_SECS=60 \
   SESAME_EVENT_POLL_INTERVAL_MS=60000 \
   valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.%p" \
   "$SESAME" serve --listen "127.0.0.1:$PORT" >stdout.log 2>stderr.log) &
SERVER_PID=$!
wait_for_sesame "$WORK" "$SERVER_PID" "$PORT" 1200
lt() { "$LOADTEST" --target "http://127.0.0.1:$PORT" --api-key "$KEY" --json "$@"; }

# Instructions executed by the server since the last zeroing: callgrind
# dumps its counters, and the dump's totals line is summed over threads.
counted() {
  callgrind_control -d >/dev/null "$SERVER_PID"
  local dumps
  dumps=$(ls "$WORK"/callgrind."$SERVER_PID"* | sort -V)
  local last
  last=$(echo "$dumps" | tail -1)
  awk '/^(summary|totals):/ { print $2; exit }' "$last"
}
zero() { callgrind_control -z >/dev/null "$SERVER_PID"; }

echo "== warm-up: 20 s of submits and gets (caches, pools, the first allocations)"
lt submit --concurrency 2 --connections 1 --duration 10s >/dev/null
lt get --concurrency 2 --connections 1 --duration 10s >/dev/null

phase() { # phase NAME ARGS...: runs the loadtest, prints its JSON to $WORK/NAME.json
  local name="$1"; shift
  zero
  lt "$@" >"$WORK/$name.json"
  counted >"$WORK/$name.ir"
}
ok_calls() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['ok'])" "$1"; }

echo "== submit: ${PHASE_SECS}s, 2 callers"
phase submit submit --concurrency 2 --connections 1 --duration "${PHASE_SECS}s"
echo "== get: ${PHASE_SECS}s, 2 callers"
phase get get --concurrency 2 --connections 1 --duration "${PHASE_SECS}s"
echo "== delivery: 50 watchers, submits at 10/s for ${PHASE_SECS}s"
phase watch watch --watchers 50 --connections 2 --rate 10 --duration "${PHASE_SECS}s" --baseline-calls 0

python3 - "$WORK" "$BUDGET" "$TOLERANCE" "$update" <<'PY'
import json, os, sys

work, budget_path, tolerance, update = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
def load(name):
    with open(os.path.join(work, name + ".json")) as f:
        report = json.load(f)
    with open(os.path.join(work, name + ".ir")) as f:
        instructions = int(f.read().strip())
    return report, instructions

submit, submit_ir = load("submit")
get, get_ir = load("get")
watch, watch_ir = load("watch")
assert submit["ok"] > 0 and get["ok"] > 0, "no successful calls to count"
problems = [f"{name}: {report['errors']}" for name, report in [("submit", submit), ("get", get)] if report["errors"]]
if watch["lost"] or watch["out_of_order_or_duplicate"] or watch["watch_errors"]:
    problems.append(f"watch: lost {watch['lost']}, out of order {watch['out_of_order_or_duplicate']}, errors {watch['watch_errors']}")
if problems:
    sys.exit("calls failed, the counts would mean nothing: " + "; ".join(problems))
per_submit = submit_ir / submit["ok"]
measured = {
    "submit": per_submit,
    # A get run first submits the 200 requests it reads (SEEDED in
    # loadtest/src/rpc.rs), inside the counted window: taken off.
    "get": max(get_ir - 200 * per_submit, 0) / get["ok"],
    "delivery": max(watch_ir - watch["submitted"] * per_submit, 0) / max(watch["delivered"], 1),
}
counts = {"submit": submit["ok"], "get": get["ok"], "delivery": watch["delivered"]}
if update:
    with open(budget_path, "w") as f:
        json.dump({name: round(value) for name, value in measured.items()}, f, indent=2)
        f.write("\n")
    print(f"budget written to {budget_path}")
with open(budget_path) as f:
    budget = json.load(f)
failed = []
print(f"{'operation':<10} {'operations':>10} {'instructions/op':>16} {'budget':>12} {'ratio':>7}")
for name, value in measured.items():
    ratio = value / budget[name]
    verdict = "ok" if ratio <= tolerance else f"OVER (limit {tolerance:.2f}x)"
    print(f"{name:<10} {counts[name]:>10,} {value:>16,.0f} {budget[name]:>12,} {ratio:>6.3f}x {verdict}")
    if ratio > tolerance:
        failed.append(name)
if failed:
    sys.exit(f"instruction budget exceeded by more than {round((tolerance - 1) * 100)} %: {', '.join(failed)}")
print("every operation within its instruction budget")
PY
