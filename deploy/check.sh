#!/usr/bin/env bash
# Validates deploy/ with the real tools: promtool (rules and their unit
# tests, and the exposition of a live /metrics), kubernetes-validate
# (--strict: unknown fields fail too) with the schemas it bundles, and
# systemd-analyze verify. Installs what is missing; run as root on Debian
# (CI) or with the tools already present.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf -- '--> %s\n' "$*"; }

if ! command -v promtool >/dev/null 2>&1; then
  say "installing promtool (Debian package prometheus)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi
venv=target/deploy-venv
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  say "installing kubernetes-validate in $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate>=1.31'
fi

say "promtool check rules"
promtool check rules deploy/prometheus/alerts.yml
say "promtool test rules"
promtool test rules deploy/prometheus/alerts.test.yml

say "kubernetes-validate --strict deploy/k8s"
"$venv/bin/kubernetes-validate" --strict --quiet deploy/k8s/*.yaml
# The validator must refuse a broken manifest, or the check above proves
# nothing: a misspelt field must fail.
broken="$(mktemp --suffix=.yaml)"
sed 's/^  replicas: 3$/  replica: 3/' deploy/k8s/deployment.yaml >"$broken"
if "$venv/bin/kubernetes-validate" --strict --quiet "$broken" >/dev/null 2>&1; then
  echo "kubernetes-validate accepted a misspelt field: the check is not working" >&2
  exit 1
fi
rm -f "$broken"
echo "k8s manifests valid; a broken one is refused"

say "grafana dashboard is JSON that names only exported metrics"
python3 - <<'PY'
import json, re
dashboard = json.load(open("deploy/grafana/sesame.json"))
exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
assert exprs, "no queries"
names = set(re.findall(r"\b((?:grpc_server|sesame)_[a-z_]+)", " ".join(exprs)))
known = {"grpc_server_started_total", "grpc_server_handled_total",
         "grpc_server_handling_seconds_bucket", "sesame_access_requests",
         "sesame_oldest_pending_request_age_seconds", "sesame_outbox_emails",
         "sesame_outbox_oldest_due_age_seconds", "sesame_emails_sent_total",
         "sesame_emails_failed_total", "sesame_emails_dead_total",
         "sesame_watchers_connected", "sesame_db_pool_connections",
         "sesame_db_pool_max_connections", "sesame_email_delivery_reports_total",
         "sesame_emails_provider_accepted_total", "sesame_webhook_events_total",
         "sesame_email_failovers_total", "sesame_emails_suppressed_total"}
unknown = names - known
assert not unknown, f"unknown metrics in the dashboard: {unknown}"
print(f"{len(exprs)} queries over {len(names)} metrics")
PY

if command -v systemd-analyze >/dev/null 2>&1; then
  say "systemd-analyze verify"
  # verify needs ExecStart to exist: check a copy pointing at a real binary.
  # It exits 0 on some parse errors, so any output fails the check.
  unit_dir="$(mktemp -d)"
  sed 's#/usr/local/bin/sesame#/bin/true#' deploy/systemd/sesame.service >"$unit_dir/sesame.service"
  output="$(systemd-analyze verify "$unit_dir/sesame.service" 2>&1)" || { echo "$output" >&2; exit 1; }
  rm -rf "$unit_dir"
  if [ -n "$output" ]; then
    echo "$output" >&2
    exit 1
  fi
  echo "unit verified"
else
  say "systemd-analyze not installed: unit not verified"
fi

sesame=target/debug/sesame
if [ -x "$sesame" ]; then
  say "promtool check metrics on a live /metrics"
  work="$(mktemp -d)"
  "$sesame" serve --database-url "sqlite://$work/sesame.db" --listen 127.0.0.1:0 \
    --metrics-addr 127.0.0.1:0 --log-format json >"$work/out" 2>"$work/log" &
  pid=$!
  addr=""
  for _ in $(seq 1 100); do
    addr="$(python3 -c 'import json,sys
for line in open(sys.argv[1]):
    try: entry = json.loads(line)
    except ValueError: continue
    if entry.get("fields", {}).get("message") == "metrics listening on /metrics":
        print(entry["fields"]["addr"]); break' "$work/log")"
    [ -n "$addr" ] && break
    sleep 0.1
  done
  if [ -z "$addr" ]; then
    kill "$pid" 2>/dev/null || true
    cat "$work/log" >&2
    exit 1
  fi
  # promtool lints names, help and types of the exposition.
  python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' \
    "http://$addr/metrics" >"$work/metrics"
  kill "$pid"
  wait "$pid" || true
  promtool check metrics <"$work/metrics"
  echo "$(grep -c '^# TYPE' "$work/metrics") metric families pass promtool check metrics"
  rm -rf "$work"
else
  say "no $sesame built: live /metrics not linted (cargo build --bin sesame first)"
fi
echo "deploy/ checks passed"
