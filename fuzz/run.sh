#!/usr/bin/env bash
# Builds Sesame's fuzz targets with the stable toolchain and runs each one
# for SECONDS (default 60) from its committed seed corpus, writing new
# inputs to a scratch directory so the tree stays clean. Fails if a target
# crashes (the input is kept under fuzz/artifacts/TARGET/). Prints, per
# target, the executions, executions per second and coverage reached.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      (docs/fuzzing.md)
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=(api_requests page_tokens mail_render policy_toml)
fi

# Stable Rust only: no sanitizer (ASan needs nightly's -Zsanitizer, and safe
# Rust gains little from it); libFuzzer's coverage instrumentation and
# comparison tracing work on stable.
export RUSTUP_TOOLCHAIN="${RUSTUP_TOOLCHAIN:-stable}"
fuzz_flags=(--sanitizer none)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
cargo fuzz --version
# cargo fuzz has no --locked: refuse a Cargo.lock that would need changes.
cargo metadata --locked --format-version 1 >/dev/null

cargo fuzz build "${fuzz_flags[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
printf '\n%-14s %12s %10s %8s %8s %8s  %s\n' target executions "execs/s" cov ft corpus result
for target in "${targets[@]}"; do
  log="$scratch/$target.log"
  mkdir -p "$scratch/$target"
  # The first directory receives new inputs; the seed corpus is only read.
  status=ok
  if ! cargo fuzz run "${fuzz_flags[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    status=CRASH
    failed+=("$target")
  fi
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
  last="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
  cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
  ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
  corpus="$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")"
  printf '%-14s %12s %10s %8s %8s %8s  %s\n' "$target" "$(stat number_of_executed_units)" \
    "$(stat average_exec_per_sec)" "${cov:-?}" "${ft:-?}" "${corpus:-?}" "$status"
  if [ "$status" != ok ]; then
    echo "---- $target: last lines of the libFuzzer log ----"
    tail -n 40 "$log"
    echo "----"
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "crashed: ${failed[*]}; reproduce with: cd fuzz && cargo fuzz run ${fuzz_flags[*]} TARGET artifacts/TARGET/crash-..." >&2
  exit 1
fi
echo "no crash in ${#targets[@]} targets, ${seconds} s each"
