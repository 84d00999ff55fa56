#!/usr/bin/env bash
# Runs the Java client's tests (JUnit 5 through Maven Surefire) against the real
# server binary: $SESAME_BIN, default ../../target/debug/sesame (relative to
# clients/java). Needs: Java 17+ and Maven 3.8+ (dependencies and protoc come
# from Maven Central into ~/.m2 the first time; later runs work offline).
# Extra arguments go to Maven, e.g. -Dtest=WatchTest or -o.
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

# Old reports must not be counted below.
rm -rf target/surefire-reports

status=0
mvn -q -B -Dstyle.color=never test -Dsesame.bin="$bin" "$@" || status=$?

# -q hides Surefire's summary: print it from the reports, as Surefire words it.
shopt -s nullglob
reports=(target/surefire-reports/TEST-*.xml)
if (( ${#reports[@]} == 0 )); then
  echo "test.sh: no Surefire report: no test ran" >&2
  exit $(( status == 0 ? 1 : status ))
fi
read -r tests failures errors skipped < <(
  for report in "${reports[@]}"; do
    # The first line with <testsuite holds the suite's totals.
    grep -m1 -o '<testsuite [^>]*>' "$report"
  done | awk '
    function attr(name,   m) { return match($0, name "=\"[0-9]+\"") ? substr($0, RSTART + length(name) + 2, RLENGTH - length(name) - 3) : 0 }
    { t += attr("tests"); f += attr("failures"); e += attr("errors"); s += attr("skipped") }
    END { print t + 0, f + 0, e + 0, s + 0 }')
echo  # Maven 3.8 -q leaves the line open (escape codes without a newline)
echo "Tests run: $tests, Failures: $failures, Errors: $errors, Skipped: $skipped"
if (( status == 0 && tests == 0 )); then
  echo "test.sh: no test ran" >&2
  exit 1
fi
if (( status == 0 && skipped > 0 )); then
  echo "test.sh: $skipped test(s) skipped; this suite skips nothing" >&2
  exit 1
fi
exit "$status"
