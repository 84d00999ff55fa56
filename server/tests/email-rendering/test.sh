#!/usr/bin/env bash
# Rendering checks of every email (check.mjs; docs/email-style.md): install
# exactly the locked packages (no browser download: Debian's /usr/bin/chromium
# is used), then render each kind x locale x user type with the real binary
# ($SESAME_BIN, default target/debug/sesame at the repository root) and check
# them with doiuse-email, html-validate and Chromium at 320 and 600 px.
# Screenshots go to out/ here (EMAIL_RENDERING_OUT elsewhere), not committed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM_PATH" ]]; then
  echo "email rendering: $CHROMIUM_PATH not found: apt-get install chromium (these checks are never skipped)" >&2
  exit 1
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "email rendering: npm not found: apt-get install nodejs npm (these checks are never skipped)" >&2
  exit 1
fi
bin="$(realpath "${SESAME_BIN:-../../../target/debug/sesame}")"
if [[ ! -x "$bin" ]]; then
  echo "email rendering: no sesame binary at $bin: cargo build --bin sesame, or set SESAME_BIN" >&2
  exit 1
fi
# Run a private copy: a build in a shared target directory may replace the
# binary while the checks run.
copy_dir="$(mktemp -d)"
trap 'rm -rf "$copy_dir"' EXIT
cp "$bin" "$copy_dir/sesame"
export SESAME_BIN="$copy_dir/sesame"
npm ci --no-audit --no-fund
node check.mjs
