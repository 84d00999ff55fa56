#!/usr/bin/env bash
# Installs sesame-client with its test extras into clients/python/.venv (from
# PyPI) and runs its tests against the real server binary:
# $SESAME_BIN, default ../../target/debug/sesame (relative to clients/python).
# Needs: python3 (3.10+, with venv; Debian: apt-get install python3-venv) and,
# for the code generation check, npx (Node.js). Extra arguments go to pytest.
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

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

exec .venv/bin/python -m pytest "$@"
