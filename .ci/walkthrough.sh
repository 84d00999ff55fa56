#!/usr/bin/env bash
# Runs the README's `buf curl` walkthrough against the real binary, so the
# walkthrough cannot rot: start with embedded defaults, create a submitter key,
# submit with it, list, approve with the admin key.
set -euo pipefail

BIN="${1:?usage: walkthrough.sh PATH_TO_SESAME_BINARY}"
BUF="${BUF:-npx --yes @bufbuild/buf@1.75.0}"
WORK="$(mktemp -d)"
PORT=50551
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

cd "$WORK"
"$BIN" serve --listen "127.0.0.1:$PORT" >stdout.log 2>stderr.log &
PID=$!
for _ in $(seq 1 100); do
  grep -q "sesame listening" stderr.log && break
  kill -0 "$PID" || { cat stderr.log; echo "walkthrough: sesame exited early" >&2; exit 1; }
  sleep 0.1
done
SESAME_KEY="$(grep -o 'sesame_[A-Za-z0-9_-]*' stdout.log | head -1)"
[ -n "$SESAME_KEY" ] || { echo "walkthrough: no bootstrap key printed" >&2; exit 1; }
URL="http://127.0.0.1:$PORT"

echo "walkthrough: create a backend's submitter key"
"$BIN" keys create --name backend --role submitter >keys.out
SUBMITTER_KEY="$(grep -o 'sesame_[A-Za-z0-9_-]*' keys.out | head -1)"
[ -n "$SUBMITTER_KEY" ] || { cat keys.out; echo "walkthrough: keys create printed no key" >&2; exit 1; }

call() { # call METHOD JSON [KEY] (the admin key by default)
  $BUF curl --protocol grpc --http2-prior-knowledge \
    -H "authorization: Bearer ${3:-$SESAME_KEY}" -d "$2" "$URL/sesame.v1.AccessRequestService/$1"
}

echo "walkthrough: watch events in the background"
timeout 20 $BUF curl --protocol grpc --http2-prior-knowledge \
  -H "authorization: Bearer $SESAME_KEY" -d '{}' \
  "$URL/sesame.v1.EventService/WatchEvents" >watch.json 2>watch.err &
WATCH_PID=$!
for _ in $(seq 1 100); do grep -q '"ready"' watch.json 2>/dev/null && break; sleep 0.1; done
grep -q '"ready"' watch.json || { cat watch.err; echo "walkthrough: WatchEvents sent no ready" >&2; exit 1; }

echo "walkthrough: submit"
call SubmitAccessRequest '{
  "applicant": {"email": "ada@example.com", "full_name": "Ada Lovelace", "organization": "Analytical Engines"},
  "user_type": "USER_TYPE_PARTNER",
  "resource": "vpn-paris",
  "justification": "Maintenance of the difference engine",
  "consent": {"version": "2026-01", "purposes": ["access_management"]},
  "request_id": "walkthrough-1"
}' "$SUBMITTER_KEY" | tee submit.json
NAME="$(grep -o '"name": *"accessRequests/[^"]*"' submit.json | head -1 | sed 's/.*"\(accessRequests\/[^"]*\)"/\1/')"
grep -q '"state": *"ACCESS_REQUEST_STATE_PENDING"' submit.json
grep -q '"submitter": *"backend"' submit.json

echo "walkthrough: list"
call ListAccessRequests '{"state": "ACCESS_REQUEST_STATE_PENDING"}' | tee list.json
grep -q "$NAME" list.json

echo "walkthrough: approve"
call ApproveAccessRequest "{\"name\": \"$NAME\", \"note\": \"welcome\"}" | tee approve.json
grep -q '"state": *"ACCESS_REQUEST_STATE_APPROVED"' approve.json

echo "walkthrough: the watcher saw both events"
for _ in $(seq 1 50); do grep -q 'EVENT_TYPE_REQUEST_APPROVED' watch.json && break; sleep 0.1; done
kill "$WATCH_PID" 2>/dev/null || true
cat watch.json
grep -q 'EVENT_TYPE_REQUEST_SUBMITTED' watch.json
grep -q 'EVENT_TYPE_REQUEST_APPROVED' watch.json

echo "walkthrough: audit chain"
$BUF curl --protocol grpc --http2-prior-knowledge -H "authorization: Bearer $SESAME_KEY" -d '{}' \
  "$URL/sesame.v1.EventService/VerifyAuditChain" | tee verify.json
grep -q '"intact": *true' verify.json

echo "walkthrough: the applicant's emails are in ./mail-out"
for _ in $(seq 1 50); do [ "$(ls mail-out/*.eml 2>/dev/null | wc -l)" -ge 2 ] && break; sleep 0.1; done
ls mail-out
[ "$(ls mail-out/*.eml | wc -l)" -ge 2 ] || { echo "walkthrough: expected 2 emails in mail-out" >&2; exit 1; }
grep -l "Subject: Your access to vpn-paris is approved" mail-out/*.eml

echo "walkthrough: health without a key"
$BUF curl --protocol grpc --http2-prior-knowledge "$URL/grpc.health.v1.Health/Check" | tee health.json
grep -q '"SERVING"' health.json
echo "walkthrough: ok"
