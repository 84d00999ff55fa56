#!/usr/bin/env bash
# CI entry point of the console's browser tests: install exactly the locked
# dependencies (no browser download: Debian's /usr/bin/chromium is used), type-
# check, then run the Playwright suite against the real server binary
# ($SESAME_BIN, default target/debug/sesame at the repository root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [[ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]]; then
  echo "console e2e: ${CHROMIUM_PATH:-/usr/bin/chromium} not found: apt-get install chromium (these tests are never skipped)" >&2
  exit 1
fi
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  echo "console e2e: python3 with aiosmtpd is required (apt-get install python3-aiosmtpd or pip install aiosmtpd); these tests are never skipped" >&2
  exit 1
fi
bin="$(realpath "${SESAME_BIN:-../../target/debug/sesame}")"
if [[ ! -x "$bin" ]]; then
  echo "console e2e: no sesame binary at $bin: cargo build --bin sesame, or set SESAME_BIN" >&2
  exit 1
fi
# Run a private copy: a build in a shared target directory may replace the
# binary (and the console embedded in it) while the suite runs.
copy_dir="$(mktemp -d)"
trap 'rm -rf "$copy_dir"' EXIT
cp "$bin" "$copy_dir/sesame"
export SESAME_BIN="$copy_dir/sesame"
npm ci --no-audit --no-fund
# playwright.config.ts copies the generated client code into gen/ first.
npx playwright test --list >/dev/null
npm run typecheck
npx playwright test "$@"
