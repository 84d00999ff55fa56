#!/usr/bin/env bash
# CI entry point of the TypeScript client: install exactly the locked
# dependencies, compile (tsc, strict), then run the tests against the real
# server binary ($SESAME_BIN, default ../../target/debug/sesame).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
npm ci --no-audit --no-fund
rm -rf dist dist-test
npm run build
npm run build:test
node --test --test-concurrency=1 dist-test/test/*.test.js
