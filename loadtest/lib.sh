# Shared by the loadtest scripts (sourced): waiting for a server started in
# the background, a line of a JSON report, and a throwaway PostgreSQL cluster.

# wait_for_sesame DIR PID PORT TRIES: waits (at most TRIES x 0.1 s) until
# the `sesame serve` started in DIR as process PID has printed its first
# admin key to DIR/stdout.log and listens on 127.0.0.1:PORT; sets KEY. When
# it does not start: prints its logs and exits.
wait_for_sesame() {
  local dir="$1" pid="$2" port="$3" tries="$4"
  KEY=""
  for _ in $(seq 1 "$tries"); do
    KEY="$(grep -o "sesame_[A-Za-z0-9_-]*" "$dir/stdout.log" 2>/dev/null | head -1 || true)"
    [ -n "$KEY" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$dir/stdout.log" "$dir/stderr.log" >&2
  echo "sesame (in $dir) did not start" >&2
  exit 1
}

# field FILE FORMAT: FORMAT (Python's str.format, e.g. '{a[b]:.0f}') filled
# from the JSON object in FILE: one line of a report.
field() { python3 -c "import json, sys; print(sys.argv[2].format(**json.load(open(sys.argv[1]))))" "$@"; }

# PostgreSQL's commands run as the postgres user when this runs as root.
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# start_postgres DIR PORT [SETTING=VALUE...]: a new cluster in DIR on
# 127.0.0.1:PORT (trust authentication, user postgres, fsync and
# synchronous_commit on); sets PGBIN (the cleanup of the caller stops it
# with stop_postgres when PGBIN is set). psql_pg runs psql against it.
start_postgres() {
  local dir="$1" port="$2"; shift 2
  local settings="" setting
  for setting in "$@"; do settings="$settings -c $setting"; done
  PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  PGDIR="$dir"
  PGPORT="$port"
  mkdir -p "$dir"
  chown postgres "$dir" 2>/dev/null || true
  as_postgres "$PGBIN/initdb" -D "$dir" -A trust -U postgres >/dev/null
  as_postgres "$PGBIN/pg_ctl" -D "$dir" -l "$dir/log" -w \
    -o "-h 127.0.0.1 -p $port -k $dir -c synchronous_commit=on -c fsync=on$settings" start >/dev/null
}
psql_pg() { "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"; }

# stop_postgres [MODE]: stops the cluster start_postgres started (fast by
# default; `immediate` in a cleanup) and forgets it.
stop_postgres() {
  [ -n "${PGBIN:-}" ] || return 0
  as_postgres "$PGBIN/pg_ctl" -D "$PGDIR" -m "${1:-fast}" stop >/dev/null 2>&1 || true
  PGBIN=""
}
