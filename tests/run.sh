#!/usr/bin/env bash
# Runs the whole test suite: unit tests (no root needed) and integration tests (root: they
# run the real CLI against a busybox bundle). Ends with one line "tests: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
DENO=${DENO:-$(command -v deno || echo tools/node_modules/.bin/deno)}
export NO_COLOR=1 DENO_NO_UPDATE_CHECK=1
# The tests run capsule from source, which finds its native helper (runtime/native/*.c: exec and
# the container's init) built in dist/: rebuilt first when a C source is newer (~2 s).
stale=0
for f in runtime/native/*.[ch]; do [ "$f" -nt dist/capsule-nsexec ] && stale=1; done
if [ ! -x dist/capsule-nsexec ] || [ "$stale" = 1 ]; then
  "$DENO" run -A scripts/build.ts >/dev/null || exit 1
fi
targets=(tests/unit)
if [ "$(id -u)" = 0 ]; then
  targets+=(tests/integration tests/e2e)
else
  echo "not root: integration tests are skipped (run as root for the whole suite)" >&2
fi
log=$(mktemp)
"$DENO" test -A --no-check=remote "${targets[@]}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -1)
passed=$(sed -E 's/.*\| ([0-9]+) passed.*/\1/' <<<"$summary")
failed=$(sed -E 's/.*\| ([0-9]+) failed.*/\1/' <<<"$summary")
rm -f "$log"
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
